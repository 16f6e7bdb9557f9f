// The dashboard's ring buffer of counter samples: bounded, incremental (?since=), cumulative values.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { History, HISTORY_COLUMNS } from '../../src/observability/history.js';

describe('dashboard history', () => {
  it('keeps the newest samples up to its capacity and answers only those newer than since', () => {
    let t = 1_000;
    let hits = 0;
    const metrics = {
      totals: () => ({
        results: { hit: hits, miss: 1, coalesced: 0, revalidated: 0, stale: 0 },
        served: { cache: hits * 10, upstream: 5 },
        cacheBytes: 99,
      }),
    };
    const h = new History(metrics, 5_000, 3, () => t);
    for (let i = 0; i < 5; i++) {
      hits = i;
      h.sample();
      t += 5_000;
    }
    const all = h.since(0);
    assert.deepEqual(all.columns, HISTORY_COLUMNS);
    assert.deepEqual(all.samples.map((s) => s[0]), [11_000, 16_000, 21_000], 'the oldest two fell out');
    assert.deepEqual(all.samples[2], [21_000, 99, 4, 1, 0, 0, 0, 40, 5]);
    assert.deepEqual(h.since(16_000).samples.map((s) => s[0]), [21_000]);
    assert.deepEqual(h.since(21_000).samples, []);
  });
});
