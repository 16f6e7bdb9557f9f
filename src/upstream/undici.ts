import { createRequire } from 'node:module';
import type { Agent as UndiciAgent } from 'undici';

const require = createRequire(import.meta.url);

/**
 * undici's Agent without the rest of undici. The package's index loads every part of it at once (fetch, WebSocket,
 * EventSource, mocks, cache stores, interceptors): on a 2-core VM ~60 ms of start-up and ~9 MB of memory for code the
 * upstream client never runs. Here only the Agent's own module (its pools, clients, the HTTP parser) and the request
 * API are loaded, and the API is mixed into the dispatchers as the index does (`Object.assign(Dispatcher.prototype,
 * api)`: the same functions, so loading the index later changes nothing). undici has no `exports` map, so these
 * paths are reachable; should a later version move them, the index is the fallback (slower to load, same class).
 */
function loadAgent(): typeof UndiciAgent {
  try {
    const dispatcher = require('undici/lib/dispatcher/dispatcher.js') as { prototype: object };
    const api = require('undici/lib/api/index.js') as object;
    const agent = require('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;
    Object.assign(dispatcher.prototype, api);
    if (typeof agent.prototype.request === 'function') return agent;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
  }
  return (require('undici') as typeof import('undici')).Agent;
}

export const Agent = loadAgent();
export type Agent = UndiciAgent;
