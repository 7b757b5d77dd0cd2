import { AsyncLocalStorage } from 'node:async_hooks';
import type { DataSource } from 'typeorm';

/**
 * SQLite through TypeORM has one connection (one query runner) for the whole process: two
 * concurrent `transaction()` calls nest as savepoints of one transaction, and a plain query issued
 * while a transaction is open runs inside it, so one caller's rollback can take another caller's
 * committed work with it. This makes the connection exclusive: one transaction at a time, and a
 * query from outside the open transaction waits for it. Code running inside a transaction (same
 * async context) goes straight through, so nested calls cannot deadlock. PostgreSQL is untouched.
 */
export function serializeSqliteConnection(ds: DataSource): void {
  if (ds.options.type !== 'better-sqlite3') return;
  const inTransaction = new AsyncLocalStorage<true>();
  let tail: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn);
    tail = run.catch(() => undefined);
    return run;
  };

  const runner = ds.driver.createQueryRunner('master');
  const query = runner.query.bind(runner);
  runner.query = ((...args: Parameters<typeof query>) =>
    inTransaction.getStore() ? query(...args) : exclusive(() => query(...args))) as typeof runner.query;

  const transaction = ds.transaction.bind(ds) as (...args: unknown[]) => Promise<unknown>;
  ds.transaction = ((...args: unknown[]) =>
    inTransaction.getStore() ? transaction(...args) : exclusive(() => inTransaction.run(true, () => transaction(...args)))) as typeof ds.transaction;
}
