import { AsyncLocalStorage } from 'node:async_hooks';
import type { DataSource } from 'typeorm';

/** The better-sqlite3 connection. */
interface SqliteDb {
  inTransaction: boolean;
  prepare(sql: string): SqliteStatement;
  transaction<T>(fn: () => T): { (): T; immediate(): T };
}

interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/**
 * Statements prepared once per SQL text and run synchronously, logged like TypeORM's own (so
 * query logging and the tests that read it see them). For the hot writes that TypeORM's query
 * building made costlier than the rest of a request (the audit trail).
 */
export interface SqliteSession {
  run(sql: string, ...params: unknown[]): { changes: number };
  get<T>(sql: string, ...params: unknown[]): T | undefined;
  all<T>(sql: string, ...params: unknown[]): T[];
  /**
   * Runs `fn` in one transaction (committed when it returns, rolled back if it throws), begun
   * IMMEDIATE: it takes the write lock first, so another process's commit (the CLI beside the
   * service) makes it wait (busy_timeout) instead of failing its first write after a read. Inside
   * a transaction: a savepoint.
   */
  transaction<T>(fn: () => T): T;
}

const EXCLUSIVE = Symbol('mfaProxySqliteExclusive');
type Exclusive = <T>(fn: () => Promise<T>) => Promise<T>;
const statements = new WeakMap<SqliteDb, Map<string, SqliteStatement>>();

function prepared(db: SqliteDb, sql: string): SqliteStatement {
  let cache = statements.get(db);
  if (!cache) statements.set(db, (cache = new Map()));
  let st = cache.get(sql);
  if (!st) cache.set(sql, (st = db.prepare(sql)));
  return st;
}

/**
 * Runs `fn` on the SQLite connection in its turn: after the transaction (or query) in progress,
 * before the next; `fn` is synchronous, so nothing interleaves with it.
 */
export function onSqliteConnection<T>(ds: DataSource, fn: (s: SqliteSession) => T): Promise<T> {
  const serial = (ds as unknown as { [EXCLUSIVE]?: { exclusive: Exclusive; inTransaction: AsyncLocalStorage<true> } })[EXCLUSIVE];
  if (!serial) throw new Error('onSqliteConnection: not a serialised SQLite data source');
  // Inside a transaction its turn would come only after that transaction: never.
  if (serial.inTransaction.getStore()) throw new Error('onSqliteConnection: called inside a transaction');
  const db = (ds.driver as unknown as { databaseConnection: SqliteDb }).databaseConnection;
  const logged = (sql: string, params: unknown[]) => {
    ds.logger.logQuery(sql, params);
    return prepared(db, sql);
  };
  const session: SqliteSession = {
    run: (sql, ...params) => logged(sql, params).run(...params),
    get: <R>(sql: string, ...params: unknown[]) => logged(sql, params).get(...params) as R | undefined,
    all: <R>(sql: string, ...params: unknown[]) => logged(sql, params).all(...params) as R[],
    transaction: (body) => db.transaction(body).immediate(),
  };
  return serial.exclusive(async () => {
    if (db.inTransaction) throw new Error('onSqliteConnection: a transaction is open outside the serialised path');
    return fn(session);
  });
}

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

  (ds as unknown as { [EXCLUSIVE]: unknown })[EXCLUSIVE] = { exclusive, inTransaction };

  const runner = ds.driver.createQueryRunner('master');
  const query = runner.query.bind(runner);
  runner.query = ((...args: Parameters<typeof query>) =>
    inTransaction.getStore() ? query(...args) : exclusive(() => query(...args))) as typeof runner.query;

  const transaction = ds.transaction.bind(ds) as (...args: unknown[]) => Promise<unknown>;
  ds.transaction = ((...args: unknown[]) =>
    inTransaction.getStore() ? transaction(...args) : exclusive(() => inTransaction.run(true, () => transaction(...args)))) as typeof ds.transaction;
}
