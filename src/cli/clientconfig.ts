import { generateClientConfig, renderForTerminal, type ClientKind } from '../clientconfig/index.js';

export async function runClientConfig(
  client: string,
  opts: { mirror: string; upstream: string[]; insecure: boolean },
): Promise<void> {
  const files = generateClientConfig(client as ClientKind, {
    mirror: opts.mirror,
    upstreams: opts.upstream,
    insecure: opts.insecure,
  });
  process.stdout.write(renderForTerminal(files));
}
