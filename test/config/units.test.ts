import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration } from '../../src/config/duration.js';
import { parseRatio, parseSize } from '../../src/config/size.js';

describe('parseDuration (Go time.ParseDuration syntax; bare number = seconds) → ms', () => {
  const ok: Array<[string | number, number]> = [
    ['168h', 604_800_000],
    ['1h30m', 5_400_000],
    ['10s', 10_000],
    ['500ms', 500],
    ['0', 0],
    ['0s', 0],
    ['1.5h', 5_400_000],
    ['2h45m30.5s', 9_930_500],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['2000000ns', 2],
    ['+5m', 300_000],
    ['.5s', 500],
    ['60', 60_000],
    ['2.5', 2_500],
    [60, 60_000],
    [0, 0],
  ];
  for (const [input, ms] of ok) test(`${JSON.stringify(input)} → ${ms}`, () => assert.equal(parseDuration(input), ms));

  const bad: Array<string | number> = ['1x', '', 'h', '-5s', '5 s', '1h 30m', '1d', 'abc', '10S', -1, Number.NaN, '1h-30m'];
  for (const input of bad) {
    test(`${JSON.stringify(input)} is invalid`, () => assert.equal(parseDuration(input), undefined));
  }
});

describe('parseSize → bytes', () => {
  const ok: Array<[string | number, number]> = [
    ['50GiB', 50 * 1024 ** 3],
    ['512MB', 512_000_000],
    ['10G', 10_000_000_000],
    ['10Gi', 10 * 1024 ** 3],
    ['1.5KiB', 1536],
    ['1k', 1000],
    ['2 TiB', 2 * 1024 ** 4],
    ['100', 100],
    ['100B', 100],
    ['0', 0],
    [4096, 4096],
  ];
  for (const [input, bytes] of ok) test(`${JSON.stringify(input)} → ${bytes}`, () => assert.equal(parseSize(input), bytes));

  for (const input of ['10X', '', 'GiB', '-1', '1.5.5G', 'lots', 1.5, -4]) {
    test(`${JSON.stringify(input)} is invalid`, () => assert.equal(parseSize(input), undefined));
  }
});

describe('parseRatio (lowwatermark)', () => {
  const ok: Array<[string | number, number]> = [
    ['90%', 0.9],
    [0.9, 0.9],
    ['0.75', 0.75],
    ['100%', 1],
    [1, 1],
  ];
  for (const [input, r] of ok) test(`${JSON.stringify(input)} → ${r}`, () => assert.equal(parseRatio(input), r));
  for (const input of ['150%', '0%', 0, 90, 'ninety', '-10%', 1.2]) {
    test(`${JSON.stringify(input)} is invalid`, () => assert.equal(parseRatio(input), undefined));
  }
});
