import { Command } from 'commander';
import { ConfigError } from '../errors.js';
import type { ClientConfigCliOptions } from './clientconfig.js';
import { registerCacheCommands } from './cache.js';

/** --upstream, repeated or comma-separated. */
function collectUpstream(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').map((s) => s.trim()).filter(Boolean)];
}

// Each command's module is loaded when it runs: `serve` should not pay for the others (nor they for the server).
const program = new Command();
program
  .name('regcache')
  .description('Pull-through cache (registry mirror) for OCI/Docker registries')
  .version('0.1.0')
  .showHelpAfterError();

program
  .command('serve', { isDefault: true })
  .description('run the mirror (no config file: ./data storage, Docker Hub upstream, :5000)')
  .option('-c, --config <file>', 'distribution-style config.yml (REGISTRY_* env variables override it)')
  // Loaded on use: the server's module tree (storage drivers, TLS) takes seconds to import; other commands skip it.
  .action(async (opts: { config?: string }) => (await import('./serve.js')).runServe(opts));

program
  .command('health')
  .description('probe /healthz on the configured listener (container HEALTHCHECK); exit 0 healthy, 1 not')
  .option('-c, --config <file>', 'the config the server runs with (REGISTRY_* env variables override it)')
  .action(async (opts: { config?: string }) => (await import('./health.js')).runHealth(opts));

const config = program.command('config').description('configuration tools');
config
  .command('check')
  .description('load and validate a config file; print warnings and the effective upstreams')
  .option('-c, --config <file>', 'config file to check (default: the embedded default)')
  .action(async (opts: { config?: string }) => (await import('./configcheck.js')).runConfigCheck(opts));

program
  .command('client-config')
  .description(
    'print (stdout: file contents only; stderr: paths, notes, warnings) or --write the client configuration ' +
      'that makes a container tool pull through this mirror',
  )
  .argument('<client>', 'docker | containerd | buildkit | earthly | podman | k3s | kind | cri-o')
  .requiredOption('--mirror <url>', 'the mirror URL, e.g. https://mirror.example.com or http://10.0.0.5:5000')
  .option('--upstream <host>', 'registry host to mirror; repeat it or separate with commas (default: docker.io)', collectUpstream)
  .option('--ca <file>', 'PEM CA certificate that signed the mirror\'s certificate (each client trusts it for the mirror only)')
  .option('--insecure', 'skip TLS verification of the mirror (self-signed certificate)', false)
  .option('--rootless', 'podman: the rootless user\'s ~/.config/containers files instead of /etc/containers')
  .option('--dial-timeout <duration>', 'containerd/kind: connect timeout for the mirror before falling back (default 3s)')
  .option('-c, --config <file>', 'the server\'s config.yml: check that its default upstream stands for Docker Hub')
  .option('--write [root]', 'write the files where they belong (under ROOT if given), backing up existing ones')
  .action(async (client: string, opts: ClientConfigCliOptions & { upstream?: string[] }) =>
    (await import('./clientconfig.js')).runClientConfig(client, { ...opts, upstream: opts.upstream ?? [] }),
  );

registerCacheCommands(program);

program
  .command('status')
  .description("one-screen summary: a running server's (through its debug listener) or a stopped cache's")
  .option('-c, --config <file>', 'the config the server runs with (storage, http.debug.addr)')
  .option('--url <url>', "a running server's debug listener, e.g. http://127.0.0.1:5001")
  .option('--json', 'machine-readable output', false)
  .action(async (opts: { config?: string; url?: string; json: boolean }) => (await import('./status.js')).runStatus(opts));

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof ConfigError) {
    process.stderr.write(`regcache: invalid configuration:\n${e.message.replace(/^/gm, '  ')}\n`);
    process.exit(2);
  }
  process.stderr.write(`regcache: ${(e as Error).message}\n`);
  process.exit(1);
}
