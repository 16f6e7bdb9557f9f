import type { Config } from '../config/types.js';

/** Messages between the primary and its workers (besides coordination, src/coordination/ipc.ts) carry this tag. */
export const WORKER_TAG = 'regcache-worker';

/** The worker's config: the server's, except that only worker 0 has the debug listener. */
export type FromPrimary = { op: 'start'; config: Config; index: number };

/** `hello` once the worker listens for the start message (messages sent before that would be lost). */
export type FromWorker = { op: 'hello' } | { op: 'ready'; urls: string[]; debugUrl?: string } | { op: 'failed'; message: string };
