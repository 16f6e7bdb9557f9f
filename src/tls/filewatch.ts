/**
 * Calls back when any of a few files changes content. Watches the *directories* (fs.watch on a file
 * stops working once the file is replaced by rename, and Kubernetes secret mounts swap a `..data`
 * symlink), debounces bursts of events, and compares a stat signature so that unrelated events in
 * the directory cost only a stat. A slow poll backs up fs.watch on filesystems where it is unreliable.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface FileWatchOptions {
  debounceMs?: number;
  pollMs?: number;
}

/** Stat signature of the files: changes on rewrite in place and on replace by rename. */
export async function fileSignature(paths: string[]): Promise<string> {
  const parts = await Promise.all(
    paths.map(async (p) => {
      try {
        const s = await fs.promises.stat(p);
        return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      } catch {
        return 'missing';
      }
    }),
  );
  return parts.join('|');
}

export class FileWatch {
  private readonly watchers: fs.FSWatcher[] = [];
  private readonly poll: NodeJS.Timeout;
  private debounce: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** Signature of a state that failed to load: not retried until the files change again. */
  private failed: string | undefined;
  private closed = false;

  /**
   * @param signature the signature the caller last loaded (from fileSignature)
   * @param onChange loads the files; returns false when loading failed (e.g. a certificate written
   *        before its key): the caller keeps what it had and the next change is tried again
   */
  constructor(
    private readonly paths: string[],
    private signature: string,
    private readonly onChange: (signature: string) => Promise<boolean>,
    opts: FileWatchOptions = {},
  ) {
    const debounceMs = opts.debounceMs ?? 100;
    for (const dir of new Set(paths.map((p) => path.dirname(path.resolve(p))))) {
      try {
        const w = fs.watch(dir, { persistent: false }, () => {
          clearTimeout(this.debounce);
          this.debounce = setTimeout(() => void this.check(), debounceMs);
          this.debounce.unref();
        });
        w.on('error', () => {}); // directory gone: the poll still runs
        this.watchers.push(w);
      } catch {
        // unwatchable directory: rely on the poll
      }
    }
    this.poll = setInterval(() => void this.check(), opts.pollMs ?? 5000);
    this.poll.unref();
  }

  /** Compares the signature now and reloads when it changed. A call during a run queues one more run. */
  check(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          const sig = await fileSignature(this.paths);
          if (sig === this.signature || sig === this.failed || this.closed) continue;
          if (await this.onChange(sig)) this.signature = sig;
          else this.failed = sig;
        } while (this.again && !this.closed);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    clearInterval(this.poll);
    for (const w of this.watchers) w.close();
  }
}
