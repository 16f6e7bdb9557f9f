/** A size-bounded LRU map (Map keeps insertion order; re-inserting on get moves an entry to the end). */
export class MemoryLru<V> {
  private readonly map = new Map<string, V>();
  private total = 0;

  constructor(
    private readonly maxWeight: number,
    private readonly weigh: (v: V) => number,
  ) {}

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, v: V): void {
    this.delete(key);
    const w = this.weigh(v);
    if (w > this.maxWeight) return;
    this.map.set(key, v);
    this.total += w;
    for (const [k, old] of this.map) {
      if (this.total <= this.maxWeight) break;
      this.map.delete(k);
      this.total -= this.weigh(old);
    }
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }

  get size(): number {
    return this.map.size;
  }

  delete(key: string): void {
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.total -= this.weigh(old);
    }
  }
}
