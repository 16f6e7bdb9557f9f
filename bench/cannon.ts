// Child process: one autocannon run; prints its result as JSON on stdout.
// Usage: node --import tsx bench/cannon.ts '{"url":...,"method":"HEAD","headers":{...},"connections":32,"duration":3}'
import { createRequire } from 'node:module';

interface AutocannonClient {
  parser: Record<number, (info: unknown) => unknown> & { constructor: { kOnHeadersComplete: number } };
}

type Autocannon = (opts: Record<string, unknown>) => Promise<Record<string, unknown>>;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
const opts = JSON.parse(process.argv[2] ?? '{}') as { method?: string } & Record<string, unknown>;

// autocannon 9 waits for a body after a HEAD response that has a Content-Length (as a registry's HEAD does), so
// no HEAD ever completes. Tell its parser that HEAD responses have no body. The handler is installed right after
// setupClient returns, hence the microtask; the parser object lives as long as the client (across reconnects).
const setupClient =
  opts.method === 'HEAD'
    ? (client: AutocannonClient) =>
        queueMicrotask(() => {
          const key = client.parser.constructor.kOnHeadersComplete;
          const onHeaders = client.parser[key]!;
          client.parser[key] = (info) => {
            onHeaders(info);
            return true; // skip body
          };
        })
    : undefined;

const result = await autocannon({ ...opts, setupClient });
process.stdout.write(JSON.stringify(result));
