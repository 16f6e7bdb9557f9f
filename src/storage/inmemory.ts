import { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import type { ByteRange, CleanupReport, ObjectDriver, ObjectWriter } from '../seams.js';

/** distribution's `inmemory` driver: objects in a Map, gone with the process (tests, trials). */
export class InMemoryDriver implements ObjectDriver {
  readonly kind = 'inmemory';
  private readonly objects = new Map<string, Buffer>();

  async stat(key: string): Promise<{ size: number } | null> {
    const o = this.objects.get(key);
    return o ? { size: o.length } : null;
  }

  async get(key: string, range?: ByteRange): Promise<Readable | null> {
    const o = this.objects.get(key);
    if (!o) return null;
    return Readable.from([range ? o.subarray(range.start, range.end + 1) : o], { objectMode: false });
  }

  async read(key: string): Promise<Buffer | null> {
    return this.objects.get(key) ?? null;
  }

  async put(key: string, data: Buffer): Promise<void> {
    this.objects.set(key, Buffer.from(data));
  }

  async writer(key: string): Promise<ObjectWriter> {
    const chunks: Buffer[] = [];
    let done = false;
    const end = (): void => {
      done = true;
      chunks.length = 0;
    };
    return {
      write: async (chunk) => {
        if (done) throw new RegistryError('INTERNAL', 'write after commit/abort');
        chunks.push(Buffer.from(chunk));
      },
      commit: async () => {
        if (done) throw new RegistryError('INTERNAL', 'commit after commit/abort');
        this.objects.set(key, Buffer.concat(chunks));
        end();
      },
      abort: async () => end(),
    };
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async *list(prefix: string): AsyncIterable<{ key: string; size: number }> {
    for (const [key, o] of [...this.objects]) if (key.startsWith(`${prefix}/`)) yield { key, size: o.length };
  }

  async cleanup(): Promise<CleanupReport> {
    return { removed: 0, warnings: [] };
  }

  async close(): Promise<void> {
    this.objects.clear();
  }
}
