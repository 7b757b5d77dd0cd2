import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/config.js';
import { AuditService } from '../src/modules/audit/audit.service.js';
import { OutboxEntity } from '../src/modules/events/outbox.entity.js';
import { EnrollmentLinkEntity } from '../src/modules/factors/enrollment/enrollment-link.entity.js';
import { RevokedTokenEntity } from '../src/modules/oauth/revoked-token.entity.js';
import { RetentionService } from '../src/modules/ops/retention.service.js';
import { privateDatabase, startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, createTenant, world } from './support/fixtures.js';
import { integers, planOf, sorts, statementsDuring, tableAccesses, type Access, type Statement } from './support/query-plans.js';

const DAY = 86_400_000;
const HASH = '0'.repeat(64);

/**
 * The rule for the sealer: it reads `audit_events` only through the partial index of unsealed
 * rows, by primary key, or by an index search pinned to one app's unsealed rows; nothing it runs
 * scans the sealed history (a SCAN of any other index or of the table fails).
 */
function bounded(a: Access): boolean {
  if (a.index === 'ix_audit_events_unsealed_chain') return true;
  if (a.kind !== 'search') return false;
  // Primary key: `(id=?)` (SQLite), `((id)::text = ANY (...))` (PostgreSQL).
  if (/\(id=\?\)$/.test(a.detail) || /^\(\(id\)::text = /.test(a.detail)) return true;
  // One app's unsealed rows: `(app_id=? AND seq=?)` is SQLite's rendering of `seq IS NULL`.
  return /\(app_id=\? AND seq=\?\)$/.test(a.detail) || /\(app_id\)::text = \$\d+\) AND \(seq IS NULL\)/.test(a.detail);
}

async function expectBoundedBySealingWork(ds: DataSource, statements: Statement[]): Promise<void> {
  const onAudit = statements.filter((s) => /"?audit_events"?/.test(s.sql) && !/^\s*(INSERT|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|START)/i.test(s.sql));
  expect(onAudit.length).toBeGreaterThan(0);
  for (const s of onAudit) {
    const accesses = await tableAccesses(ds, s);
    const why = planOf(s, accesses);
    expect(accesses.length, why).toBeGreaterThan(0);
    for (const a of accesses) expect(bounded(a), why).toBe(true);
  }
}

describe('audit sealing cost does not grow with the sealed history', () => {
  let t: TestApp;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  const bulkApp = `app_bulk${randomBytes(6).toString('hex')}`;
  const ROWS = 200_000;
  beforeAll(async () => {
    db = await privateDatabase();
    t = await startApp(db.env);
    const ds = t.app.get(DataSource);
    const at = Date.now() - 30 * DAY;
    const cols = `id, app_id, at, actor_type, type, outcome, seq, prev_hash, hash`;
    if (usingPostgres()) {
      await ds.query(
        `INSERT INTO audit_events (${cols}) SELECT $1 || '_' || i, $2, $3::bigint + i, 'system', 'http.request', 'success', i, $4, $4 FROM generate_series(1, ${ROWS}) AS i`,
        [bulkApp.replace('app_', 'evt_'), bulkApp, at, HASH],
      );
      await ds.query('ANALYZE audit_events');
    } else {
      await ds.query(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS}) INSERT INTO audit_events (${cols}) SELECT ? || '_' || i, ?, ? + i, 'system', 'http.request', 'success', i, ?, ? FROM n`,
        [bulkApp.replace('app_', 'evt_'), bulkApp, at, HASH, HASH],
      );
    }
    await ds.query(`INSERT INTO audit_heads (app_id, last_seq, last_hash) VALUES (${usingPostgres() ? '$1, $2, $3' : '?, ?, ?'})`, [bulkApp, ROWS, HASH]);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  }, 60_000);

  it(`an idle sealing pass over ${ROWS} sealed rows reads only the index of unsealed rows`, async () => {
    const ds = t.app.get(DataSource);
    const audit = t.app.get(AuditService);
    await audit.sealAll();
    const started = performance.now();
    const statements = await statementsDuring(ds, () => audit.sealAll());
    const ms = performance.now() - started;
    console.log(`idle sealing pass with ${ROWS} sealed rows: ${ms.toFixed(1)} ms, ${statements.length} statements`);
    expect(statements.some((s) => /seq" IS NULL|seq IS NULL/i.test(s.sql)), statements.map((s) => s.sql).join('\n')).toBe(true);
    await expectBoundedBySealingWork(ds, statements);
  });

  it('sealing one new event of an app with a long history reads only that event, and chains it after the head', async () => {
    const ds = t.app.get(DataSource);
    const audit = t.app.get(AuditService);
    const p = usingPostgres() ? ['$1', '$2', '$3'] : ['?', '?', '?'];
    await ds.query(`INSERT INTO audit_events (id, app_id, at, actor_type, type, outcome) VALUES (${p[0]}, ${p[1]}, ${p[2]}, 'system', 'test.new', 'success')`, [`evt_new${randomBytes(6).toString('hex')}`, bulkApp, Date.now()]);
    const statements = await statementsDuring(ds, () => audit.seal(bulkApp));
    expect(statements.some((s) => /^\s*UPDATE/i.test(s.sql) && /audit_events/.test(s.sql))).toBe(true);
    await expectBoundedBySealingWork(ds, statements);
    const [row] = await ds.query(`SELECT seq, prev_hash FROM audit_events WHERE app_id = ${p[0]} AND type = 'test.new'`, [bulkApp]);
    expect(Number(row.seq)).toBe(ROWS + 1);
    expect(row.prev_hash).toBe(HASH);
  });

  it('sealing still chains every app in order: verify stays valid', async () => {
    const w = await world(t);
    for (let i = 0; i < 3; i++) await t.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    const check = (await t.http.get('/v1/audit-events/verify').set(bearer(w.tenant.apiKey)).expect(200)).body;
    expect(check).toMatchObject({ valid: true, count: expect.any(Number) });
    expect(check.count).toBeGreaterThanOrEqual(3);
  });
});

describe('retention', () => {
  let t: TestApp;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  beforeAll(async () => {
    db = await privateDatabase();
    t = await startApp({ ...db.env, RETENTION_SWEEP_SECONDS: '1', RETENTION_OUTBOX_DAYS: '7', RETENTION_BATCH_SIZE: '100' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const outboxRow = (appId: string, over: Partial<OutboxEntity>): OutboxEntity =>
    Object.assign(new OutboxEntity(), {
      id: `evt_ret${randomBytes(8).toString('hex')}`, appId, type: 'step_up.created', payload: { test: true }, createdAt: Date.now(), deliveredAt: null,
      deliveryStatus: 'pending', attempts: 0, nextAttemptAt: Date.now(), claimedUntil: null, claimedBy: null, lastError: null, ...over,
    });
  const linkRow = (appId: string, expiresAt: number): EnrollmentLinkEntity =>
    Object.assign(new EnrollmentLinkEntity(), {
      id: `enr_ret${randomBytes(8).toString('hex')}`, appId, userId: 'usr_retention', tokenHash: randomBytes(32).toString('hex'), createdAt: expiresAt - DAY, expiresAt,
      webauthnChallenge: null, webauthnChallengeExpiresAt: null, webauthnName: null,
    });

  it('the scheduled sweep purges old delivered outbox rows, expired revoked tokens and expired enrollment links; keeps everything else and every audit row', async () => {
    const ds = t.app.get(DataSource);
    const w = await world(t);
    const appId = w.tenant.appId;
    const now = Date.now();
    const old = now - 8 * DAY;
    // Outbox: 250 delivered more than 7 days ago (several batches); kept: recent deliveries and anything not delivered.
    const purgeable = Array.from({ length: 250 }, () => outboxRow(appId, { createdAt: old, deliveredAt: old, deliveryStatus: 'delivered', attempts: 1 }));
    const keptOutbox = [
      outboxRow(appId, { createdAt: now - DAY, deliveredAt: now - DAY, deliveryStatus: 'delivered', attempts: 1 }),
      outboxRow(appId, { createdAt: old, deliveryStatus: 'pending', nextAttemptAt: now + DAY }),
      outboxRow(appId, { createdAt: old, deliveryStatus: 'failed', attempts: 10 }),
      // A no_endpoint row is kept RETENTION_OUTBOX_DAYS too (test/outbox-throughput.e2e-spec.ts purges an old one).
      outboxRow(appId, { createdAt: now - DAY, deliveryStatus: 'no_endpoint' }),
    ];
    for (let i = 0; i < purgeable.length; i += 50) await ds.getRepository(OutboxEntity).insert(purgeable.slice(i, i + 50) as never);
    await ds.getRepository(OutboxEntity).insert(keptOutbox as never);
    // A real revocation (RFC 7009) whose token is still live, and two whose tokens expired hours ago.
    const revoked = await t.http.post('/oauth/revoke').auth(w.agent.id, w.agent.clientSecret).type('form').send({ token: w.token });
    expect(revoked.status).toBe(200);
    const live = await ds.getRepository(RevokedTokenEntity).findBy({ appId });
    expect(live).toHaveLength(1);
    const expiredJtis = [`jti-ret-${randomBytes(6).toString('hex')}`, `jti-ret-${randomBytes(6).toString('hex')}`];
    await ds.getRepository(RevokedTokenEntity).insert(expiredJtis.map((jti) => ({ jti, appId, agentId: w.agent.id, expiresAt: now - 2 * 3_600_000, revokedAt: now - 3 * 3_600_000 })));
    // Enrollment links: one expired a day ago, one live (created through the API).
    const expiredLink = linkRow(appId, now - DAY);
    await ds.getRepository(EnrollmentLinkEntity).insert(expiredLink);
    const created = await t.http.post(`/v1/users/${w.userId}/enrollment-links`).set(bearer(w.tenant.apiKey)).send({}).expect(201);
    const auditBefore = Number((await ds.query(`SELECT COUNT(*) AS n FROM audit_events WHERE app_id = ${usingPostgres() ? '$1' : '?'}`, [appId]))[0].n);
    expect(auditBefore).toBeGreaterThan(0);

    const outboxIds = async () => new Set((await ds.getRepository(OutboxEntity).findBy({ appId })).map((r) => r.id));
    await expect.poll(async () => [...(await outboxIds())].filter((id) => purgeable.some((p) => p.id === id)).length, { timeout: 15_000, interval: 200 }).toBe(0);
    await expect.poll(async () => (await ds.getRepository(RevokedTokenEntity).findBy({ appId })).map((r) => r.jti), { timeout: 10_000, interval: 200 }).toEqual([live[0].jti]);
    await expect.poll(async () => (await ds.getRepository(EnrollmentLinkEntity).findBy({ appId })).map((r) => r.id), { timeout: 10_000, interval: 200 }).not.toContain(expiredLink.id);

    const left = await outboxIds();
    expect(keptOutbox.filter((r) => !left.has(r.id))).toEqual([]);
    const links = await ds.getRepository(EnrollmentLinkEntity).findBy({ appId });
    expect(links).toHaveLength(1);
    expect(links[0].expiresAt).toBe(Date.parse(created.body.expiresAt));
    // The revoked (live) token is still refused; audit rows are never purged.
    await t.http.get('/v1/whoami').set(bearer(w.token)).expect(401);
    const auditAfter = Number((await ds.query(`SELECT COUNT(*) AS n FROM audit_events WHERE app_id = ${usingPostgres() ? '$1' : '?'}`, [appId]))[0].n);
    expect(auditAfter).toBeGreaterThanOrEqual(auditBefore);
  });

  it('purges in bounded batches: one batch deletes at most the batch size, and concurrent sweepers (several instances) never fail or double-count', async () => {
    // Two instances on one database of their own (PostgreSQL: two pools; SQLite: one file), their schedules off.
    const own = await privateDatabase();
    const t1 = await startApp({ ...own.env, RETENTION_SWEEP_SECONDS: '0' });
    const t2 = await startApp({ DATABASE_URL: t1.config.database.type === 'sqlite' ? `sqlite:${t1.config.database.path}` : t1.config.database.url, RETENTION_SWEEP_SECONDS: '0' });
    try {
      const ds = t1.app.get(DataSource);
      const tenant = await createTenant(t1);
      const old = Date.now() - 30 * DAY;
      const rows = Array.from({ length: 1000 }, () => outboxRow(tenant.appId, { createdAt: old, deliveredAt: old, deliveryStatus: 'delivered', attempts: 1 }));
      for (let i = 0; i < rows.length; i += 100) await ds.getRepository(OutboxEntity).insert(rows.slice(i, i + 100) as never);
      const before = Date.now() - 7 * DAY;
      const a = t1.app.get(RetentionService);
      const b = t2.app.get(RetentionService);
      const remaining = async () => (await ds.getRepository(OutboxEntity).countBy({ appId: tenant.appId }));
      // One batch: exactly the limit (there are more eligible rows than that).
      const first = await a.purgeDeliveredOutbox(before, 150);
      expect(first).toBe(150);
      expect(await remaining()).toBe(850);
      // Two instances, eight concurrent batches of 100 each: every row is deleted once, no batch exceeds its limit.
      const counts = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).purgeDeliveredOutbox(before, 100)));
      for (const c of counts) expect(c).toBeLessThanOrEqual(100);
      expect(await remaining()).toBe(850 - counts.reduce((x, y) => x + y, 0));
      // Full sweeps on both instances at once finish the job.
      await Promise.all([a.sweep(), b.sweep()]);
      expect(await remaining()).toBe(0);
    } finally {
      await t2.close();
      await t1.close();
      await own.drop();
    }
  });

  it('the retention settings are validated at boot', () => {
    const base = { NODE_ENV: 'test', MASTER_KEY: Buffer.alloc(32, 7).toString('base64'), ADMIN_TOKEN: 'x'.repeat(32) };
    expect(() => loadConfig({ ...base, RETENTION_OUTBOX_DAYS: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, RETENTION_BATCH_SIZE: 'many' })).toThrow(/RETENTION_BATCH_SIZE/);
    expect(loadConfig(base).retention).toEqual({ sweepSeconds: 3600, outboxDays: 7, batchSize: 1000 });
  });
});

describe('retention cost does not grow with history', () => {
  let t: TestApp;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  const appId = `app_hist${randomBytes(6).toString('hex')}`;
  const DELIVERED = 60_000;
  const NO_ENDPOINT = 10_000;
  const REVOKED = 20_000;
  const old = Date.now() - 30 * DAY;
  beforeAll(async () => {
    db = await privateDatabase();
    t = await startApp({ ...db.env, RETENTION_SWEEP_SECONDS: '0' });
    const ds = t.app.get(DataSource);
    // Rows old enough to purge, as years of deliveries leave them: only the batch's worth may be read.
    const p = (i: number) => (usingPostgres() ? `$${i}` : '?');
    const time = (i: number) => (usingPostgres() ? `$${i}::bigint` : '?');
    const outbox = (status: string, n: number, delivered: boolean) =>
      ds.query(
        `INSERT INTO outbox (id, app_id, type, payload, created_at, delivered_at, delivery_status, attempts)
         SELECT ${p(1)} || '_' || n.i, ${p(2)}, 'step_up.created', '{}', ${time(3)} + n.i, ${delivered ? `${time(4)} + n.i` : 'NULL'}, '${status}', 1 FROM ${integers(n)}`,
        delivered ? [`evt_h${status}`, appId, old, old] : [`evt_h${status}`, appId, old],
      );
    await outbox('delivered', DELIVERED, true);
    await outbox('no_endpoint', NO_ENDPOINT, false);
    await ds.query(
      `INSERT INTO revoked_tokens (jti, app_id, agent_id, expires_at, revoked_at) SELECT ${p(1)} || '_' || n.i, ${p(2)}, 'agt_hist', ${time(3)} + n.i, ${time(4)} FROM ${integers(REVOKED)}`,
      ['jti_h', appId, old, old],
    );
    // PostgreSQL plans with the statistics autovacuum keeps; ANALYZE stands in for it here.
    if (usingPostgres()) await ds.query('ANALYZE outbox, revoked_tokens');
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  }, 60_000);

  it.each([
    ['delivered outbox rows', 'outbox', DELIVERED, (r: RetentionService, before: number, limit: number) => r.purgeDeliveredOutbox(before, limit)],
    ['no_endpoint outbox rows', 'outbox', NO_ENDPOINT, (r: RetentionService, before: number, limit: number) => r.purgeNoEndpointOutbox(before, limit)],
    ['expired revoked tokens', 'revoked_tokens', REVOKED, (r: RetentionService, before: number, limit: number) => r.purgeExpiredRevokedTokens(before, limit)],
  ] as const)('a batch of %s reads the batch through an index: no scan of the table, no sort of the history', async (_name, table, rows, purge) => {
    const ds = t.app.get(DataSource);
    const retention = t.app.get(RetentionService);
    const count = async () => Number((await ds.query(`SELECT COUNT(*) AS n FROM ${table} WHERE app_id = ${usingPostgres() ? '$1' : '?'}`, [appId]))[0].n);
    const before = await count();
    expect(before).toBeGreaterThanOrEqual(rows);
    let deleted = 0;
    const statements = await statementsDuring(ds, async () => void (deleted = await purge(retention, Date.now() - 7 * DAY, 1000)));
    expect(deleted).toBe(1000);
    const deletes = statements.filter((s) => /^\s*DELETE/i.test(s.sql));
    expect(deletes).toHaveLength(1);
    const accesses = await tableAccesses(ds, deletes[0], table);
    const why = planOf(deletes[0], accesses);
    expect(accesses.length, why).toBeGreaterThanOrEqual(2);
    expect(accesses.filter((a) => a.kind !== 'search'), why).toEqual([]);
    expect(await sorts(ds, deletes[0]), why).toBe(false);
    expect(await count()).toBe(before - 1000);
  });
});
