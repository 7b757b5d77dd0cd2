import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../migrations/index.js';
import { dataSourceOptions } from '../src/database/data-source.js';
import { privateDatabase, usingPostgres } from './support/app.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A data source with the migrations up to `upTo` (exclusive), on a database of its own. */
async function migratedBefore(upTo: string): Promise<DataSource> {
  const own = await privateDatabase();
  cleanups.push(own.drop);
  const database = usingPostgres()
    ? { type: 'postgres' as const, url: own.env.DATABASE_URL }
    : { type: 'sqlite' as const, path: join(tmpdir(), `mfa-proxy-migration-${randomBytes(6).toString('hex')}.sqlite`) };
  const options = dataSourceOptions({ database } as never);
  const upToIndex = MIGRATIONS.findIndex((m) => m.name === upTo);
  const ds = new DataSource({ ...options, migrations: MIGRATIONS.slice(0, upToIndex) } as never);
  await ds.initialize();
  cleanups.push(() => ds.destroy());
  await ds.runMigrations({ transaction: 'all' });
  return ds;
}

const columns = 'id, app_id, at, actor_type, actor_id, agent_id, type, outcome';

describe('migration AgentActivity', () => {
  it("starts each agent's lastUsedAt from the audit trail: its latest event as actor; the app's events about it do not count", async () => {
    const ds = await migratedBefore('AgentActivity1765100000000');
    const p = usingPostgres() ? (i: number) => `$${i}` : () => '?';
    const insert = (row: unknown[]) => ds.query(`INSERT INTO audit_events (${columns}) VALUES (${row.map((_, i) => p(i + 1)).join(', ')})`, row);
    await insert(['evt_1', 'app_a', 1_000, 'agent', 'agt_1', 'agt_1', 'http.request', 'success']);
    await insert(['evt_2', 'app_a', 3_000, 'agent', 'agt_1', 'agt_1', 'step_up.requested', 'success']);
    await insert(['evt_3', 'app_a', 9_000, 'app', 'app_a', 'agt_1', 'mfa_proxy_token.consumed', 'success']);
    await insert(['evt_4', 'app_a', 2_000, 'agent', 'agt_2', 'agt_2', 'http.request', 'failure']);
    await insert(['evt_5', 'app_b', 5_000, 'agent', 'agt_3', 'agt_3', 'http.request', 'success']);
    await insert(['evt_6', 'app_a', 7_000, 'system', null, null, 'key.rotated', 'success']);

    const full = new DataSource({ ...ds.options, migrations: MIGRATIONS } as never);
    await full.initialize();
    cleanups.push(() => full.destroy());
    expect((await full.runMigrations({ transaction: 'all' })).map((m) => m.name)).toEqual(['AgentActivity1765100000000']);

    const rows: { app_id: string; agent_id: string; last_at: string | number }[] = await full.query('SELECT app_id, agent_id, last_at FROM agent_activity ORDER BY app_id, agent_id');
    expect(rows.map((r) => [r.app_id, r.agent_id, Number(r.last_at)])).toEqual([
      ['app_a', 'agt_1', 3_000],
      ['app_a', 'agt_2', 2_000],
      ['app_b', 'agt_3', 5_000],
    ]);
    const indexes: { name: string }[] = usingPostgres()
      ? await full.query("SELECT indexname AS name FROM pg_indexes WHERE tablename = 'audit_events'")
      : await full.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events'");
    expect(indexes.map((i) => i.name)).not.toContain('ix_audit_events_app_agent_at');
    expect(indexes.map((i) => i.name)).not.toContain('ix_audit_events_app_at');
    expect(indexes.map((i) => i.name)).toContain('ux_audit_events_app_seq');
  });
});
