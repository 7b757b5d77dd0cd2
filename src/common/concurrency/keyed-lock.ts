/**
 * Runs critical sections one at a time per key, within this process. On SQLite (one instance, one
 * connection, where TypeORM nests concurrent transactions as savepoints instead of isolating them)
 * this is what makes "count, then insert" and "check attempts, then evaluate" exact; on PostgreSQL
 * a row lock does the same across instances, and this lock only spares the database the queueing.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      // The last holder leaves no entry behind.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with a holder or waiters (for tests). */
  get size(): number {
    return this.tails.size;
  }
}
