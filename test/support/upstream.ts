// Upstream clients (src/upstream) for tests: a complete UpstreamConfig, and clients whose logs are captured.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { UpstreamConfig } from '../../src/config/types.js';
import { createUpstream } from '../../src/upstream/index.js';
import type { Upstream } from '../../src/upstream/types.js';

/** A complete UpstreamConfig for remoteurl: short timeouts, no TTL, no freshness, no routing; `o` overrides. */
export function upstreamConfig(remoteurl: string, o: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    name: 'test-upstream',
    remoteurl,
    ttlMs: null,
    freshnessMs: 0,
    timeouts: { connectMs: 2000, headersMs: 5000, idleMs: 5000 },
    insecureSkipVerify: false,
    connections: 4,
    dockerHub: false,
    prefixes: [],
    hosts: [],
    allow: [],
    deny: [],
    authhosts: [],
    ...o,
  };
}

export interface UpstreamClients {
  /** Every log line (JSON, level trace) of every client made, e.g. to check that no secret was ever logged. */
  logLines: string[];
  /** A new client for remoteurl (upstreamConfig named `name`, then `o`), logging into logLines. */
  client(remoteurl: string, o?: Partial<UpstreamConfig>): Upstream;
  /** Closes every client made. */
  closeAll(): Promise<void>;
}

export function upstreamClients(name: string): UpstreamClients {
  const logLines: string[] = [];
  const clients: Upstream[] = [];
  return {
    logLines,
    client(remoteurl, o = {}) {
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          logLines.push(chunk.toString());
          cb();
        },
      });
      const u = createUpstream(upstreamConfig(remoteurl, { name, ...o }), { logger: pino({ level: 'trace' }, sink) });
      clients.push(u);
      return u;
    },
    async closeAll() {
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}
