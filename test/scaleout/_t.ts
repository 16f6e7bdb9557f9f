import { startRegcacheProcess, freePort } from '../support/regcache.js';
import { makeTempDir } from '../support/tmp.js';
const t0 = Date.now();
const port = await freePort();
const tmp = await makeTempDir('x-');
const r = await startRegcacheProcess({ configYaml: `version: 0.1\nhttp: {addr: 127.0.0.1:${port}}\nstorage: {inmemory: {}}\n`, port, env: process.argv[2] ? { TMPDIR: tmp } : {} });
console.log('started in', Date.now() - t0);
const t1 = Date.now(); await r.stop(); console.log('stopped in', Date.now() - t1);
