import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { expect, vi } from 'vitest';
import { usingPostgres, type TestApp } from './app.js';

/**
 * Makes the database itself refuse one kind of write to `table` for one app (a trigger), so a real
 * query with its real parameters fails inside the service. PostgreSQL: SQLSTATE 22001 (string data
 * right truncation, what an over-long value gives); SQLite: SQLITE_CONSTRAINT_TRIGGER.
 */
export async function refuseWrites(t: TestApp, table: string, op: 'INSERT' | 'UPDATE', appId: string): Promise<{ code: string; restore(): Promise<void> }> {
  expect(appId).toMatch(/^app_[A-Za-z0-9_-]+$/); // interpolated into DDL below
  const ds = t.app.get(DataSource);
  const name = `test_refuse_${randomBytes(6).toString('hex')}`;
  if (usingPostgres()) {
    await ds.query(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = '22001'; END $$`);
    await ds.query(`CREATE TRIGGER ${name} BEFORE ${op} ON ${table} FOR EACH ROW WHEN (NEW.app_id = '${appId}') EXECUTE FUNCTION ${name}()`);
    return {
      code: '22001',
      restore: async () => {
        await ds.query(`DROP TRIGGER ${name} ON ${table}`);
        await ds.query(`DROP FUNCTION ${name}()`);
      },
    };
  }
  await ds.query(`CREATE TRIGGER ${name} BEFORE ${op} ON ${table} FOR EACH ROW WHEN NEW.app_id = '${appId}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
  return { code: 'SQLITE_CONSTRAINT_TRIGGER', restore: async () => void (await ds.query(`DROP TRIGGER ${name}`)) };
}


/**
 * Lets the first call of `repo[method]` whose arguments `match` read its row, then holds its answer
 * until `release()`: the window in which another request can change the row after it was read and
 * before the reader acts on it. `read` resolves once the row has been read. Other calls go through.
 * `vi.restoreAllMocks()` undoes it.
 */
export function holdAfterRead<R extends object>(repo: R, method: keyof R & string, matches: (args: unknown[]) => boolean): { read: Promise<void>; release(): void } {
  const original = (repo[method] as (...args: unknown[]) => Promise<unknown>).bind(repo);
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let signalRead!: () => void;
  const read = new Promise<void>((resolve) => (signalRead = resolve));
  let held = false;
  vi.spyOn(repo, method as never).mockImplementation((async (...args: unknown[]) => {
    const row = await original(...args);
    if (!held && matches(args)) {
      held = true;
      signalRead();
      await released;
    }
    return row;
  }) as never);
  return { read, release };
}
