// Preload for tests of what a process loads (NODE_OPTIONS="--import <this file's URL>", REGCACHE_MODULE_LOG=<file>).
// Every ES module is appended to the file as it loads (a module load hook); on SIGUSR2 the CommonJS files loaded so
// far (require.cache: what ES-imported packages pulled in with require) follow, then a line `#done`.
// Plain JavaScript: NODE_OPTIONS preloads run before the command line's --import of tsx.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const log = process.env.REGCACHE_MODULE_LOG;
if (log) {
  const hooks = `
    import { appendFileSync } from 'node:fs';
    export async function load(url, context, next) {
      const result = await next(url, context);
      appendFileSync(${JSON.stringify(log)}, url + '\\n');
      return result;
    }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
  const cache = createRequire(import.meta.url).cache;
  process.on('SIGUSR2', () => appendFileSync(log, `${Object.keys(cache).join('\n')}\n#done\n`));
}
