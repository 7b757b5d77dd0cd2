import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { expect } from 'vitest';
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

