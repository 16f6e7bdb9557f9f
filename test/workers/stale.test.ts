// test/reliability/stale.test.ts again with regcache.workers = 2: the workers must behave as one process.
process.env.REGCACHE_TEST_WORKERS = '2';
await import('../reliability/stale.test.js');
