/**
 * Teardown in reverse order of creation: each resource registers its close right after it is created, so that
 * a failed start-up and a normal shutdown close exactly the same things. A failing close does not stop the
 * others; the first error is rethrown at the end.
 */
export class DisposerStack {
  private readonly stack: Array<() => unknown> = [];

  defer(close: () => unknown): void {
    this.stack.push(close);
  }

  /** Registers `value`'s close and returns the value. */
  use<T>(value: T, close: (value: T) => unknown): T {
    this.defer(() => close(value));
    return value;
  }

  async disposeAll(): Promise<void> {
    let first: unknown;
    while (this.stack.length > 0) {
      try {
        await this.stack.pop()!();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }
}
