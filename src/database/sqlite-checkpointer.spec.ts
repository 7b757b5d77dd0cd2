import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { DataSource } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { dataSourceOptions } from './data-source.js';
import { checkpointSqliteInBackground, FALLBACK_AUTOCHECKPOINT_PAGES, SqliteCheckpointer } from './sqlite-checkpointer.js';

interface Db {
  pragma(sql: string, opts?: { simple: boolean }): unknown;
  prepare(sql: string): { run(...p: unknown[]): unknown; get(...p: unknown[]): unknown };
}

const PAGE = 4096;
const files: string[] = [];
const open: DataSource[] = [];

async function dataSource(): Promise<{ ds: DataSource; db: Db; path: string }> {
  const path = join(tmpdir(), `mfa-proxy-ckpt-${randomBytes(6).toString('hex')}.sqlite`);
  files.push(path);
  const ds = await new DataSource(dataSourceOptions({ database: { type: 'sqlite', path } })).initialize();
  open.push(ds);
  const db = (ds.driver as unknown as { databaseConnection: Db }).databaseConnection;
  db.prepare('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)').run();
  return { ds, db, path };
}

/** `n` one-row transactions of ~3 KB each (a page or two of WAL apiece), yielding every ten as a service between requests. */
async function write(db: Db, n: number): Promise<void> {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  for (let i = 0; i < n; i++) {
    insert.run(randomBytes(3000));
    if (i % 10 === 9) await sleep(5);
  }
}

const walBytes = (path: string) => statSync(`${path}-wal`).size;

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

afterEach(async () => {
  for (const ds of open.splice(0)) if (ds.isInitialized) await ds.destroy();
  for (const f of files.splice(0)) for (const s of ['', '-wal', '-shm']) rmSync(f + s, { force: true });
});

describe('SqliteCheckpointer', () => {
  it('checkpoints the WAL on its own thread: with pauses between writes, the WAL starts over long before the (raised) threshold of the service connection', async () => {
    const { ds, db, path } = await dataSource();
    checkpointSqliteInBackground(ds);
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === FALLBACK_AUTOCHECKPOINT_PAGES);
    // 3,000 pages: three times SQLite's default threshold, below the raised one. Without the
    // worker, nothing checkpoints and the WAL holds every page.
    await write(db, 3_000);
    expect(walBytes(path)).toBeLessThan(1_000 * PAGE);
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 3_000 });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
  });

  it('bounds the WAL under writes without a pause: the service connection finishes the copy at the fallback threshold, and the file is cut back', async () => {
    const { ds, db, path } = await dataSource();
    checkpointSqliteInBackground(ds);
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === FALLBACK_AUTOCHECKPOINT_PAGES);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    let largest = 0;
    for (let i = 0; i < 3 * FALLBACK_AUTOCHECKPOINT_PAGES; i++) {
      insert.run(randomBytes(3000));
      if (i % 500 === 0) largest = Math.max(largest, walBytes(path));
    }
    // Three times the threshold was written; the WAL stays near it (a frame is a page and a 24-byte
    // header; the service connection's checkpoint is skipped while the worker's runs, and the next
    // commit tries again: half the threshold of margin).
    expect(largest).toBeLessThan(1.5 * FALLBACK_AUTOCHECKPOINT_PAGES * (PAGE + 24));
    expect(db.pragma('journal_size_limit', { simple: true })).toBe(FALLBACK_AUTOCHECKPOINT_PAGES * PAGE);
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 3 * FALLBACK_AUTOCHECKPOINT_PAGES });
  });

  it('cuts the WAL file back to the fallback threshold in the file’s own page size (64 KiB pages here)', async () => {
    const path = join(tmpdir(), `mfa-proxy-ckpt-${randomBytes(6).toString('hex')}.sqlite`);
    files.push(path);
    const Sqlite = createRequire(import.meta.url)('better-sqlite3') as new (path: string) => Db & { close(): void };
    const made = new Sqlite(path);
    made.pragma('page_size = 65536');
    made.prepare('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)').run();
    made.close();
    const ds = await new DataSource(dataSourceOptions({ database: { type: 'sqlite', path } })).initialize();
    open.push(ds);
    const db = (ds.driver as unknown as { databaseConnection: Db }).databaseConnection;
    expect(db.pragma('page_size', { simple: true })).toBe(65_536);
    checkpointSqliteInBackground(ds);
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === FALLBACK_AUTOCHECKPOINT_PAGES);
    await until(() => db.pragma('journal_size_limit', { simple: true }) === FALLBACK_AUTOCHECKPOINT_PAGES * 65_536);
  });

  it('gives checkpoints back to the service connection (SQLite default threshold) when the worker dies', async () => {
    const { ds, db } = await dataSource();
    const checkpointer = SqliteCheckpointer.start(ds)!;
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === FALLBACK_AUTOCHECKPOINT_PAGES);
    await (checkpointer as unknown as { worker: Worker }).worker.terminate();
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === 1_000);
    await checkpointer.stop(); // already gone: returns at once
  });

  it('stops with the data source: a last checkpoint empties the WAL, then both connections close', async () => {
    const { ds, db, path } = await dataSource();
    checkpointSqliteInBackground(ds);
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === FALLBACK_AUTOCHECKPOINT_PAGES);
    await write(db, 200);
    await ds.destroy();
    // The last connection to close checkpoints and deletes the WAL (SQLite's own close); a worker
    // still holding the file open would leave it in place.
    expect(() => statSync(`${path}-wal`)).toThrow();
  });

  it('is not started for an in-memory database', async () => {
    const mem = await new DataSource(dataSourceOptions({ database: { type: 'sqlite', path: ':memory:' } })).initialize();
    open.push(mem);
    expect(SqliteCheckpointer.start(mem)).toBeNull();
  });
});
