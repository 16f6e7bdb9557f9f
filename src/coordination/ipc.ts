import type { AccessRecorder, Coordinator, FetchLease, Leadership } from '../seams.js';
import type { FetchCoordination } from './index.js';

/**
 * Coordination among the worker processes of one server (regcache.workers), over node:cluster's IPC channel.
 * The primary process keeps the state (CoordinationHub); each worker talks to it through IpcCoordination,
 * which implements the same FetchCoordination as Redis does for replicas on several hosts:
 *
 * - leases: one worker fetches a blob or manifest, the others wait for its release and read storage. A lease
 *   is held until released or until its worker exits (the primary sees that at once, so no expiry is needed);
 * - leadership: the first live candidate leads (the sweeper runs in one worker);
 * - access times, batched, so the sweeping worker plans with what every worker served;
 * - events: what one worker stored is told to the others (each keeps an index of what storage holds).
 */

/** Messages carry this tag; anything else on the channel is not ours. */
const TAG = 'regcache-coord';
/** Access times are sent to the primary at most this often. */
const ACCESS_FLUSH_MS = 1_000;
/** A gather answers with what arrived within this long (a worker may be busy or dying). */
const GATHER_TIMEOUT_MS = 2_000;

type Entries = Array<[string, number]>;

export type ToHub =
  | { op: 'acquire'; id: number; key: string }
  | { op: 'release'; key: string }
  | { op: 'wait'; id: number; key: string }
  | { op: 'campaign'; name: string }
  | { op: 'resign'; name: string }
  | { op: 'touch'; entries: Entries }
  | { op: 'accesses'; id: number }
  | { op: 'forget'; ids: string[] }
  | { op: 'event'; name: string; args: unknown[] }
  | { op: 'gather'; id: number }
  | { op: 'collected'; gid: number; value: unknown };

export type FromHub =
  | { op: 'reply'; id: number; value: unknown }
  | { op: 'leader'; name: string; leader: boolean }
  | { op: 'event'; name: string; args: unknown[] }
  | { op: 'collect'; gid: number };

/** A message that expects a reply, before its id is given. */
type Request = Extract<ToHub, { id: number }> extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never;

interface Tagged {
  [TAG]: true;
}

export function isCoordinationMessage(m: unknown): m is Tagged & { op: string } {
  return typeof m === 'object' && m !== null && (m as Record<string, unknown>)[TAG] === true;
}

function tag<T extends object>(m: T): T & Tagged {
  return { ...m, [TAG]: true };
}

/** The primary's side: the state every worker shares. `send` delivers a message to one worker. */
export class CoordinationHub {
  private readonly workers = new Map<number, (m: FromHub & Tagged) => void>();
  private readonly leases = new Map<string, number>();
  private readonly waiters = new Map<string, Array<{ worker: number; id: number }>>();
  /** Candidates per leadership name, in the order they asked; the first is the leader. */
  private readonly candidates = new Map<string, number[]>();
  private readonly access = new Map<string, number>();
  private readonly gathers = new Map<number, { worker: number; id: number; waiting: Set<number>; values: unknown[]; timer: NodeJS.Timeout }>();
  private nextGather = 1;

  attach(worker: number, send: (m: FromHub & Tagged) => void): void {
    this.workers.set(worker, send);
  }

  /** A worker exited: its leases are released and its leaderships pass on. */
  detach(worker: number): void {
    this.workers.delete(worker);
    for (const [key, holder] of [...this.leases]) if (holder === worker) this.release(key);
    for (const [key, list] of this.waiters) this.waiters.set(key, list.filter((w) => w.worker !== worker));
    for (const name of this.candidates.keys()) this.resign(name, worker);
    for (const [gid, g] of this.gathers) {
      if (g.worker === worker) this.endGather(gid, false);
      else if (g.waiting.delete(worker) && g.waiting.size === 0) this.endGather(gid, true);
    }
  }

  receive(worker: number, m: ToHub): void {
    switch (m.op) {
      case 'acquire': {
        const free = !this.leases.has(m.key);
        if (free) this.leases.set(m.key, worker);
        this.reply(worker, m.id, free);
        break;
      }
      case 'release':
        if (this.leases.get(m.key) === worker) this.release(m.key);
        break;
      case 'wait':
        if (!this.leases.has(m.key)) this.reply(worker, m.id, true);
        else this.waiters.set(m.key, [...(this.waiters.get(m.key) ?? []), { worker, id: m.id }]);
        break;
      case 'campaign': {
        const list = this.candidates.get(m.name) ?? [];
        if (!list.includes(worker)) list.push(worker);
        this.candidates.set(m.name, list);
        this.send(worker, { op: 'leader', name: m.name, leader: list[0] === worker });
        break;
      }
      case 'resign':
        this.resign(m.name, worker);
        break;
      case 'touch':
        for (const [id, at] of m.entries) if ((this.access.get(id) ?? 0) < at) this.access.set(id, at);
        break;
      case 'accesses':
        this.reply(worker, m.id, [...this.access]);
        break;
      case 'forget':
        for (const id of m.ids) this.access.delete(id);
        break;
      case 'event':
        for (const other of this.workers.keys()) if (other !== worker) this.send(other, { op: 'event', name: m.name, args: m.args });
        break;
      case 'gather': {
        const others = [...this.workers.keys()].filter((w) => w !== worker);
        const gid = this.nextGather++;
        const timer = setTimeout(() => this.endGather(gid, true), GATHER_TIMEOUT_MS);
        timer.unref();
        this.gathers.set(gid, { worker, id: m.id, waiting: new Set(others), values: [], timer });
        if (others.length === 0) this.endGather(gid, true);
        for (const w of others) this.send(w, { op: 'collect', gid });
        break;
      }
      case 'collected': {
        const g = this.gathers.get(m.gid);
        if (!g?.waiting.delete(worker)) break;
        g.values.push(m.value);
        if (g.waiting.size === 0) this.endGather(m.gid, true);
        break;
      }
    }
  }

  private endGather(gid: number, answer: boolean): void {
    const g = this.gathers.get(gid);
    if (!g) return;
    this.gathers.delete(gid);
    clearTimeout(g.timer);
    if (answer) this.reply(g.worker, g.id, g.values);
  }

  private release(key: string): void {
    this.leases.delete(key);
    const waiting = this.waiters.get(key) ?? [];
    this.waiters.delete(key);
    for (const w of waiting) this.reply(w.worker, w.id, true);
  }

  private resign(name: string, worker: number): void {
    const list = this.candidates.get(name) ?? [];
    const wasLeader = list[0] === worker;
    const rest = list.filter((w) => w !== worker);
    this.candidates.set(name, rest);
    if (wasLeader && rest[0] !== undefined) this.send(rest[0], { op: 'leader', name, leader: true });
  }

  private reply(worker: number, id: number, value: unknown): void {
    this.send(worker, { op: 'reply', id, value });
  }

  private send(worker: number, m: FromHub): void {
    this.workers.get(worker)?.(tag(m));
  }
}

/** The channel to the primary as a worker sees it (process.send / process.on('message') in a cluster worker). */
export interface HubChannel {
  send(m: ToHub & Tagged): void;
  onMessage(handler: (m: FromHub) => void): void;
  /** The channel is open (the primary is alive). */
  readonly connected: boolean;
}

/** A cluster worker's channel: its process's IPC. */
export function processChannel(): HubChannel {
  return {
    send: (m) => {
      if (process.connected) process.send!(m);
    },
    onMessage: (handler) => process.on('message', (m: unknown) => isCoordinationMessage(m) && handler(m as unknown as FromHub)),
    get connected() {
      return process.connected;
    },
  };
}

const NO_LEASE_NEEDED: FetchLease = { release: async () => {} };

/** A worker's side: FetchCoordination through the primary. */
export class IpcCoordination implements FetchCoordination {
  readonly coordinator: Coordinator;
  readonly access: AccessRecorder;
  private nextId = 1;
  private readonly pending = new Map<number, (value: unknown) => void>();
  private readonly leaders = new Map<string, boolean>();
  private readonly listeners = new Map<string, (...args: unknown[]) => void>();
  private provider: (() => Promise<unknown>) | undefined;
  private touched = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly channel: HubChannel = processChannel()) {
    channel.onMessage((m) => this.receive(m));
    this.timer = setInterval(() => this.flushAccess(), ACCESS_FLUSH_MS);
    this.timer.unref();
    const self = this;
    this.coordinator = {
      async tryAcquire(key) {
        if (!channel.connected) return NO_LEASE_NEEDED;
        if (!(await self.request<boolean>({ op: 'acquire', key }))) return null;
        let released = false;
        return {
          release: async () => {
            if (released) return;
            released = true;
            self.post({ op: 'release', key });
          },
        };
      },
      async waitReleased(key, timeoutMs) {
        if (!channel.connected) return;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          self.request({ op: 'wait', key }),
          new Promise<void>((r) => {
            timer = setTimeout(r, timeoutMs);
            timer.unref();
          }),
        ]);
        clearTimeout(timer);
      },
      close: async () => {},
    };
    this.access = {
      touched: (id, at) => {
        if ((this.touched.get(id) ?? 0) < at) this.touched.set(id, at);
      },
      lastAccesses: async () => {
        this.flushAccess();
        return new Map(await this.request<Entries>({ op: 'accesses' }));
      },
      forget: async (ids) => {
        for (const id of ids) this.touched.delete(id);
        this.post({ op: 'forget', ids });
      },
    };
  }

  leadership(name: string): Leadership {
    this.post({ op: 'campaign', name });
    return {
      isLeader: () => !this.closed && this.channel.connected && (this.leaders.get(name) ?? false),
      close: async () => {
        this.leaders.set(name, false);
        this.post({ op: 'resign', name });
      },
    };
  }

  /**
   * The same events with the named ones also told to the other workers; theirs arrive here and are applied to
   * `events` (only locally: they are not told on again).
   */
  share<T extends object>(events: T, names: ReadonlyArray<keyof T & string>): T {
    const shared = { ...events };
    for (const name of names) {
      const local = events[name] as unknown as (...args: unknown[]) => void;
      this.listeners.set(name, local);
      (shared as Record<string, unknown>)[name] = (...args: unknown[]) => {
        local(...args);
        this.post({ op: 'event', name, args });
      };
    }
    return shared;
  }

  /** What this worker answers when another gathers (e.g. its metrics). */
  provide(fn: () => Promise<unknown>): void {
    this.provider = fn;
  }

  /** What every other worker's provider answered (those that answered within a couple of seconds). */
  async gather<T>(): Promise<T[]> {
    const values = (await this.request<Array<T | undefined> | undefined>({ op: 'gather' })) ?? [];
    return values.filter((v): v is T => v !== undefined);
  }

  private receive(m: FromHub): void {
    if (m.op === 'collect') {
      const provider = this.provider;
      void (provider ? provider() : Promise.resolve(undefined)).then(
        (value) => this.post({ op: 'collected', gid: m.gid, value }),
        () => this.post({ op: 'collected', gid: m.gid, value: undefined }),
      );
    } else if (m.op === 'reply') {
      const done = this.pending.get(m.id);
      this.pending.delete(m.id);
      done?.(m.value);
    } else if (m.op === 'leader') this.leaders.set(m.name, m.leader);
    else if (m.op === 'event') {
      try {
        // Structured clone turns a Buffer into a plain Uint8Array.
        const args = m.args.map((a) => (a instanceof Uint8Array && !Buffer.isBuffer(a) ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : a));
        this.listeners.get(m.name)?.(...args);
      } catch {
        // an observer's failure must not break the channel
      }
    }
  }

  private flushAccess(): void {
    if (this.touched.size === 0) return;
    const entries: Entries = [...this.touched];
    this.touched = new Map();
    this.post({ op: 'touch', entries });
  }

  private post(m: ToHub): void {
    this.channel.send(tag(m));
  }

  private request<T>(m: Request): Promise<T> {
    // The primary is gone: the worker is shutting down (see src/server/worker.ts); answer as "nobody else".
    if (!this.channel.connected) return Promise.resolve(undefined as T);
    const id = this.nextId++;
    return new Promise<T>((resolve) => {
      this.pending.set(id, resolve as (v: unknown) => void);
      this.post({ ...m, id } as ToHub);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.flushAccess();
  }
}
