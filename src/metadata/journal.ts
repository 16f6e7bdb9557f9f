import { mkdir, open, readFile, rename, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * An append-only file of JSON lines. Appends and rewrites are serialized; a rewrite (compaction) goes to a temp
 * file that is synced and renamed over the journal, so a crash at any point leaves either the old or the new file.
 * A torn last line (crash mid-append) is cut off when the journal is opened.
 */
export class Journal {
  private queue: Promise<void> = Promise.resolve();
  /** Lines in the file (live records + superseded ones): tells when a compaction pays off. */
  lines = 0;

  private constructor(
    readonly file: string,
    private fh: FileHandle,
  ) {}

  static async open(file: string): Promise<{ journal: Journal; records: unknown[]; skipped: number }> {
    await mkdir(path.dirname(file), { recursive: true });
    let buf: Buffer;
    try {
      buf = await readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      buf = Buffer.alloc(0);
    }
    const end = buf.lastIndexOf(0x0a) + 1;
    if (end < buf.length) await truncate(file, end);
    const records: unknown[] = [];
    let skipped = buf.length > end ? 1 : 0;
    for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
      if (!line) continue;
      try {
        records.push(JSON.parse(line));
      } catch {
        skipped++;
      }
    }
    const journal = new Journal(file, await open(file, 'a'));
    journal.lines = records.length;
    return { journal, records, skipped };
  }

  private enqueue(op: () => Promise<void>): Promise<void> {
    const p = this.queue.then(op);
    this.queue = p.catch(() => {});
    return p;
  }

  append(lines: string[]): Promise<void> {
    if (lines.length === 0) return this.queue;
    return this.enqueue(async () => {
      await this.fh.appendFile(lines.join('\n') + '\n');
      this.lines += lines.length;
    });
  }

  /** Replaces the whole journal with `lines` (atomically). */
  rewrite(lines: string[]): Promise<void> {
    return this.enqueue(async () => {
      const tmp = `${this.file}.tmp`;
      const out = await open(tmp, 'w');
      try {
        await out.writeFile(lines.length ? lines.join('\n') + '\n' : '');
        await out.datasync();
      } finally {
        await out.close();
      }
      await rename(tmp, this.file);
      await this.fh.close();
      this.fh = await open(this.file, 'a');
      this.lines = lines.length;
    });
  }

  close(): Promise<void> {
    return this.enqueue(() => this.fh.close());
  }
}
