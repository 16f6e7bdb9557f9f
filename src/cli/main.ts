import { Command, Option } from 'commander';
import { ConfigError } from '../errors.js';
import { runConfigCheck } from './configcheck.js';
import { runClientConfig } from './clientconfig.js';
import { registerCacheCommands } from './cache.js';

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

const config = program.command('config').description('configuration tools');
config
  .command('check')
  .description('load and validate a config file; print warnings and the effective upstreams')
  .option('-c, --config <file>', 'config file to check (default: the embedded default)')
  .action(async (opts: { config?: string }) => runConfigCheck(opts));

program
  .command('client-config')
  .description('print the client configuration that makes a container tool pull through this mirror')
  .argument('<client>', 'docker | containerd | buildkit | earthly | podman | k3s | kind | cri-o')
  .requiredOption('--mirror <url>', 'the mirror URL, e.g. https://mirror.example.com or http://10.0.0.5:5000')
  .addOption(new Option('--upstream <host...>', 'registry hosts to mirror').default(['docker.io']))
  .option('--insecure', 'skip TLS verification of the mirror (self-signed certificate)', false)
  .action(async (client: string, opts: { mirror: string; upstream: string[]; insecure: boolean }) =>
    runClientConfig(client, opts),
  );

registerCacheCommands(program);

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
