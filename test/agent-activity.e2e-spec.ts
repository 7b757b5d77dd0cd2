import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../migrations/index.js';
import { newEventId } from '../src/common/ids.js';
import { dataSourceOptions } from '../src/database/data-source.js';
import { serializeSqliteConnection } from '../src/database/sqlite-serial.js';
import type { AuditEventEntity } from '../src/modules/audit/audit-event.entity.js';
import { AuditRepository } from '../src/modules/audit/audit.repository.js';
import { privateDatabase, usingPostgres } from './support/app.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A data source with the migrations up to `upTo` (exclusive; all without it), on a database of its own. */
async function migratedBefore(upTo?: string): Promise<DataSource> {
  const own = await privateDatabase();
  cleanups.push(own.drop);
  const database = usingPostgres()
    ? { type: 'postgres' as const, url: own.env.DATABASE_URL }
    : { type: 'sqlite' as const, path: join(tmpdir(), `mfa-proxy-migration-${randomBytes(6).toString('hex')}.sqlite`) };
  const options = dataSourceOptions({ database } as never);
  const upToIndex = upTo === undefined ? MIGRATIONS.length : MIGRATIONS.findIndex((m) => m.name === upTo);
  const ds = new DataSource({ ...options, migrations: MIGRATIONS.slice(0, upToIndex) } as never);
  await ds.initialize();
  serializeSqliteConnection(ds);
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

    const full = new DataSource({ ...ds.options, migrations: MIGRATIONS.slice(0, MIGRATIONS.findIndex((m) => m.name === 'AgentActivity1765100000000') + 1) } as never);
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

/** A successful request of the agent at `at`, as the request flush gets it. */
const request = (appId: string, agentId: string, at: number): Partial<AuditEventEntity> => ({
  id: newEventId(at), appId, at, requestId: null, actorType: 'agent', actorId: agentId, userId: 'usr_1', agentId, model: 'm', taskId: null,
  type: 'http.request', action: 'GET /v1/whoami', resource: null, outcome: 'success', status: 200, ip: null, details: null,
});

/** A repository whose warnings are collected (a failed agent_activity write is a warning, not an error). */
function repository(ds: DataSource, warnings: unknown[]): AuditRepository {
  const repo = new AuditRepository(ds);
  (repo as unknown as { logger: { warn(...args: unknown[]): void } }).logger = { warn: (...args) => void warnings.push(args) };
  return repo;
}

const lastAt = async (ds: DataSource) =>
  Object.fromEntries(((await ds.query('SELECT agent_id, last_at FROM agent_activity')) as { agent_id: string; last_at: string | number }[]).map((r) => [r.agent_id, Number(r.last_at)]));

describe('agent_activity writes', () => {
  it('never go backwards: an older request written after a newer one (another instance, a late flush) leaves the newer time', async () => {
    const ds = await migratedBefore();
    const warnings: unknown[] = [];
    await repository(ds, warnings).insertBatch(() => [request('app_a', 'agt_1', 50_000)]);
    await repository(ds, warnings).insertBatch(() => [request('app_a', 'agt_1', 20_000), request('app_a', 'agt_2', 20_000)]);
    expect(await lastAt(ds)).toEqual({ agt_1: 50_000, agt_2: 20_000 });
    expect(warnings).toEqual([]);
  });

  it('from several instances at once, over the same agents in different orders, neither fail nor deadlock', async () => {
    const ds = await migratedBefore();
    const second = new DataSource(ds.options);
    await second.initialize();
    cleanups.push(() => second.destroy());
    serializeSqliteConnection(second);
    const warnings: unknown[] = [];
    const repos = [ds, ds, ds, second, second, second].map((d) => repository(d, warnings));
    const agents = Array.from({ length: 100 }, (_, i) => `agt_${String(i).padStart(3, '0')}`);
    const rounds = 10;
    for (let round = 1; round <= rounds; round++) {
      await Promise.all(
        repos.map((repo, r) => {
          // Each writer its own order of the agents (rotated, every other one reversed), and its own time.
          const order = [...agents.slice(r * 17), ...agents.slice(0, r * 17)];
          if (r % 2) order.reverse();
          return repo.insertBatch(() => order.map((a) => request('app_a', a, round * 10_000 + r)));
        }),
      );
    }
    expect(warnings).toEqual([]);
    expect(await lastAt(ds)).toEqual(Object.fromEntries(agents.map((a) => [a, rounds * 10_000 + repos.length - 1])));
  });
});
