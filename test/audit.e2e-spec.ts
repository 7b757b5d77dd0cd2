import Database from 'better-sqlite3';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditRepository } from '../src/modules/audit/audit.repository.js';
import { AuditService } from '../src/modules/audit/audit.service.js';
import { privateDatabase, startApp, usingPostgres, type TestApp } from './support/app.js';
import { agentToken, bearer, createAgent, createTenant, createUser, world } from './support/fixtures.js';
import { approvalToken, approveWithCode, approveWithPasskey, createStepUp, expectStatus, human, type Human } from './support/step-up.js';

let t: TestApp;
const logs: string[] = [];
beforeAll(async () => {
  t = await startApp({ LOG_LEVEL: 'debug' }, { logs });
});
afterAll(async () => {
  await t?.close();
});

const events = async (h: { tenant: { apiKey: string } }, query: Record<string, string | number> = {}) =>
  (await t.http.get('/v1/audit-events').query({ limit: 200, ...query }).set(bearer(h.tenant.apiKey)).expect(200)).body;

describe('audit trail', () => {
  it('each audited event type appears with model and task id after the flow that causes it', async () => {
    const h = await human(t);
    const token = await agentToken(t, h.agent, { task_id: 'task-audit-1', scope: 'files:delete' });
    const asAgent = { ...h, token };
    const approved = await t.http.post('/v1/step-ups').set(bearer(token)).send({ action: 'files:delete', resource: 'a' }).expect(201);
    await expectStatus(approveWithPasskey(t, asAgent, approved.body.approvalUrl), 200);
    const fetched = await t.http.get(`/v1/step-ups/${approved.body.id}`).set(bearer(token)).expect(200);
    await t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: fetched.body.mfaProxyToken, action: 'files:delete', resource: 'a' }).expect(200);
    await t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: fetched.body.mfaProxyToken, action: 'files:delete', resource: 'a' }).expect(200);
    const denied = await t.http.post('/v1/step-ups').set(bearer(token)).send({ action: 'files:delete', resource: 'b' }).expect(201);
    await t.http.post(`/v1/approvals/${approvalToken(denied.body.approvalUrl)}/deny`).send({}).expect(200);
    const cancelled = await t.http.post('/v1/step-ups').set(bearer(token)).send({ action: 'files:delete', resource: 'c' }).expect(201);
    await t.http.delete(`/v1/step-ups/${cancelled.body.id}`).set(bearer(token)).expect(200);
    const expired = await t.http.post('/v1/step-ups').set(bearer(token)).send({ action: 'files:delete', resource: 'd', expiresIn: 60 }).expect(201);
    t.clock.advance(61_000);
    try {
      await t.http.get(`/v1/step-ups/${expired.body.id}`).set(bearer(token)).expect(200);
    } finally {
      t.clock.reset();
    }

    await expect.poll(async () => (await events(h, { type: 'http.request', agentId: h.agent.id })).events.length).toBeGreaterThan(5);
    const all = (await events(h)).events as Record<string, unknown>[];
    for (const type of ['step_up.created', 'step_up.approved', 'step_up.denied', 'step_up.cancelled', 'step_up.expired', 'mfa_proxy_token.consumed']) {
      const e = all.find((x) => x.type === type);
      expect(e, type).toMatchObject({ agentId: h.agent.id, userId: h.userId, model: 'claude-test-1', taskId: 'task-audit-1', action: 'files:delete' });
    }
    expect(all.find((x) => x.type === 'mfa_proxy_token.verify_failed.already_used')).toMatchObject({ outcome: 'failure', actorType: 'app', action: 'files:delete' });
    const agentRequest = all.find((x) => x.type === 'http.request' && x.actorType === 'agent' && x.action === 'POST /v1/step-ups');
    expect(agentRequest).toMatchObject({ agentId: h.agent.id, model: 'claude-test-1', taskId: 'task-audit-1', requestId: expect.any(String), status: expect.any(Number) });
    const humanRequest = all.find((x) => x.type === 'http.request' && x.actorType === 'human');
    expect(humanRequest).toMatchObject({ userId: h.userId });
    // Sequence numbers count up and each event links to the one before.
    const seqs = all.map((e) => e.seq as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    for (let i = 1; i < all.length; i++) expect(all[i].prevHash).toBe(all[i - 1].hash);
  });

  it('429s are audited', async () => {
    const tenant = await createTenant(t);
    const agent = await createAgent(t, tenant, await createUser(t, tenant), { rateLimitPerMinute: 1 });
    const token = await agentToken(t, agent);
    await t.http.get('/v1/whoami').set(bearer(token)).expect(200);
    await t.http.get('/v1/whoami').set(bearer(token)).expect(429);
    await expect.poll(async () => (await events({ tenant }, { agentId: agent.id })).events.map((e: { status: number }) => e.status)).toContain(429);
  });

  it('filters and paginates with a cursor', async () => {
    const h = await human(t);
    for (const r of ['p1', 'p2', 'p3']) await createStepUp(t, h, { resource: r }).expect(201);
    const first = await events(h, { type: 'step_up.created', limit: 2 });
    expect(first.events).toHaveLength(2);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await events(h, { type: 'step_up.created', limit: 2, after: first.nextCursor });
    expect(second.events).toHaveLength(1);
    expect(second.nextCursor).toBeNull();
    expect([...first.events, ...second.events].map((e: { resource: string }) => e.resource)).toEqual(['p1', 'p2', 'p3']);
    await t.http.get('/v1/audit-events').query({ limit: 500 }).set(bearer(h.tenant.apiKey)).expect(400);
    await t.http.get('/v1/audit-events').query({ after: 'x' }).set(bearer(h.tenant.apiKey)).expect(400);
    // Another app sees none of these.
    const other = await createTenant(t);
    expect((await events({ tenant: other }, { type: 'step_up.created' })).events).toEqual([]);
  });

  describe('tamper evidence', () => {
    async function chainOf(): Promise<Human> {
      const h = await human(t);
      for (const r of ['t1', 't2', 't3', 't4']) await createStepUp(t, h, { resource: r }).expect(201);
      const check = (await t.http.get('/v1/audit-events/verify').set(bearer(h.tenant.apiKey)).expect(200)).body;
      expect(check).toMatchObject({ valid: true, count: expect.any(Number), headHash: expect.stringMatching(/^[0-9a-f]{64}$/) });
      expect(check.firstBadSeq).toBeUndefined();
      return h;
    }
    const verify = async (h: Human) => (await t.http.get('/v1/audit-events/verify').set(bearer(h.tenant.apiKey)).expect(200)).body;
    const ds = () => t.app.get(DataSource);

    it('an edited row is reported', async () => {
      const h = await chainOf();
      await ds().createQueryBuilder().update('audit_events').set({ resource: 'edited' }).where('app_id = :a AND seq = 3', { a: h.tenant.appId }).execute();
      expect(await verify(h)).toMatchObject({ valid: false, firstBadSeq: 3 });
    });

    it('a deleted row is reported', async () => {
      const h = await chainOf();
      await ds().createQueryBuilder().delete().from('audit_events').where('app_id = :a AND seq = 2', { a: h.tenant.appId }).execute();
      expect(await verify(h)).toMatchObject({ valid: false, firstBadSeq: 2 });
    });

    it('reordered rows are reported', async () => {
      const h = await chainOf();
      const q = (from: number, to: number) => ds().createQueryBuilder().update('audit_events').set({ seq: to }).where('app_id = :a AND seq = :from', { a: h.tenant.appId, from }).execute();
      await q(2, -1);
      await q(3, 2);
      await q(-1, 3);
      expect(await verify(h)).toMatchObject({ valid: false, firstBadSeq: 2 });
    });

    it('the CLI check reports the first bad sequence number of every app', async () => {
      const h = await chainOf();
      await ds().createQueryBuilder().update('audit_events').set({ outcome: 'denied' }).where('app_id = :a AND seq = 4', { a: h.tenant.appId }).execute();
      const { AuditService } = await import('../src/modules/audit/audit.service.js');
      const results = await t.app.get(AuditService).verifyAll();
      expect(results.find((r) => r.appId === h.tenant.appId)?.check).toMatchObject({ valid: false, firstBadSeq: 4 });
    });
  });
});

describe('an over-long ip in a request’s context', () => {
  it('is cut to the column’s width: the batch it is written in keeps every event (PostgreSQL refused the whole insert)', async () => {
    const a = await world(t);
    const b = await world(t);
    const audit = t.app.get(AuditService);
    const context = (h: typeof a, ip: string) => ({ appId: h.tenant.appId, requestId: `req-ip-${ip.length}`, actorType: 'agent' as const, actorId: h.agent.id, agentId: h.agent.id, ip });
    audit.recordRequest(context(a, `2001:db8::1%${'z'.repeat(200)}`), '/v1/ip-width', 'GET', 200);
    audit.recordRequest(context(b, '203.0.113.9'), '/v1/ip-width', 'GET', 200);
    await audit.flushRequests();
    const ipsOf = async (h: typeof a) => ((await events(h, { type: 'http.request' })).events as { action: string; ip: string }[]).filter((e) => e.action === 'GET /v1/ip-width').map((e) => e.ip);
    expect(await ipsOf(a)).toEqual([`2001:db8::1%${'z'.repeat(64 - 12)}`]);
    expect(await ipsOf(b)).toEqual(['203.0.113.9']);
  });
});

describe('the sealer’s list of apps with unsealed events (both databases)', () => {
  let s: TestApp;
  beforeAll(async () => {
    s = await startApp();
    // Timers stopped: nothing seals behind the test's back.
    const timers = s.app.get(AuditService) as unknown as { timer: NodeJS.Timeout; flushTimer: NodeJS.Timeout };
    clearInterval(timers.timer);
    clearInterval(timers.flushTimer);
  });
  afterAll(async () => {
    await s?.close();
  });

  it('lists apps in id order after the given one, at most the limit: a pass can start where the last one ended', async () => {
    const audit = s.app.get(AuditService);
    const repo = s.app.get(AuditRepository);
    await audit.flushRequests();
    for (const appId of await repo.appsWithUnsealed(1_000)) await audit.seal(appId);
    const ids = ['app_zz_review_a', 'app_zz_review_b', 'app_zz_review_c'];
    await s.app.get(DataSource).transaction((m) => audit.recordMany(m, ids.map((appId) => ({ input: { appId, type: 'step_up.expired', outcome: 'success' as const }, context: {} }))));
    expect(await repo.appsWithUnsealed(100)).toEqual(ids);
    expect(await repo.appsWithUnsealed(2)).toEqual(ids.slice(0, 2));
    expect(await repo.appsWithUnsealed(100, ids[0])).toEqual(ids.slice(1));
    expect(await repo.appsWithUnsealed(100, ids[2])).toEqual([]);
  });
});

describe('sealing at append: a request flush writes its events chained', () => {
  // Its own instance on a database of its own, with the audit timers stopped: each flush and seal
  // happens when a test says (on the shared PostgreSQL, other files' sealers would seal these apps).
  let s: TestApp;
  let audit: AuditService;
  let ds: DataSource;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  beforeAll(async () => {
    db = await privateDatabase();
    s = await startApp(db.env);
    audit = s.app.get(AuditService);
    ds = s.app.get(DataSource);
    const timers = audit as unknown as { timer: NodeJS.Timeout; flushTimer: NodeJS.Timeout };
    clearInterval(timers.timer);
    clearInterval(timers.flushTimer);
  });
  afterAll(async () => {
    await s?.close();
    await db?.drop();
  });

  type Row = { type: string; seq: number | null; hash: string | null; at: number; id: string };
  /** `?` placeholders, numbered for PostgreSQL. */
  const sql = (text: string) => (usingPostgres() ? text.replace(/\?/g, ((n) => () => `$${++n}`)(0)) : text);
  /** The app's rows: unsealed first, then by seq; each part in (at, id) order. */
  const rowsOf = async (appId: string): Promise<Row[]> =>
    ((await ds.query(sql('SELECT type, seq, hash, at, id FROM audit_events WHERE app_id = ?'), [appId])) as Row[])
      .map((r) => ({ ...r, seq: r.seq === null ? null : Number(r.seq), at: Number(r.at) }))
      .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0) || a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const verify = async (apiKey: string) => (await s.http.get('/v1/audit-events/verify').set(bearer(apiKey)).expect(200)).body;
  /** Sealed rows out of the sealer's (at, id) order. */
  const outOfOrder = (rows: Row[]) => {
    const sealed = rows.filter((r) => r.seq !== null);
    return sealed.filter((r, i) => i > 0 && (r.at < sealed[i - 1].at || (r.at === sealed[i - 1].at && r.id < sealed[i - 1].id)));
  };

  /** `n` state-change events of the app, written unsealed in one transaction (as a sweep would). */
  const backlog = (appId: string, n: number) =>
    ds.transaction((m) => audit.recordMany(m, Array.from({ length: n }, (_, i) => ({ input: { appId, type: 'step_up.expired', outcome: 'success' as const, resource: `s${i}` }, context: {} }))));
  /** Runs `fn` with `onQuery` called before each statement the data source logs. */
  const watchingQueries = async (onQuery: (sql: string) => void, fn: () => Promise<unknown>) => {
    const logger = ds.logger as { logQuery: (q: string, p?: unknown[]) => void };
    const logQuery = logger.logQuery.bind(logger);
    logger.logQuery = (q, p) => {
      onQuery(q);
      return logQuery(q, p);
    };
    try {
      await fn();
    } finally {
      logger.logQuery = logQuery;
    }
  };

  it("a flush writes request events already chained, in (at, id) order with the app's unsealed events, and the chain verifies", async () => {
    const w = await world(s);
    for (let i = 0; i < 20; i++) {
      // State changes (unsealed until a seal) and request events, interleaved in time.
      await createUser(s, w.tenant);
      await s.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    }
    expect((await rowsOf(w.tenant.appId)).filter((r) => r.seq === null).length, 'unsealed before the flush').toBeGreaterThan(20);
    await audit.flushRequests();
    const rows = await rowsOf(w.tenant.appId);
    expect(rows.filter((r) => r.seq === null || r.hash === null), 'unsealed after the flush').toEqual([]);
    expect(rows.filter((r) => r.type === 'http.request').length).toBeGreaterThanOrEqual(40);
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
    expect(outOfOrder(rows)).toEqual([]);
    expect(await verify(w.tenant.apiKey)).toMatchObject({ valid: true, count: rows.length });
  });

  it('an app whose unsealed row cannot be sealed loses no event, its own or another app’s: its new events wait unsealed for the sealer', async () => {
    const a = await world(s);
    const b = await world(s);
    await audit.flushRequests();
    const requestsOfB = async () => (await rowsOf(b.tenant.appId)).filter((r) => r.type === 'http.request' && r.seq !== null).length;
    const before = await requestsOfB();
    await createUser(s, a.tenant);
    // A damaged unsealed row: details the chain's canonical JSON refuses (a lone surrogate).
    await ds.query(sql(`UPDATE audit_events SET details = '{"x":"\\ud800"}' WHERE app_id = ? AND seq IS NULL`), [a.tenant.appId]);
    for (let i = 0; i < 5; i++) await s.http.get('/v1/whoami').set(bearer(b.token)).expect(200);
    await s.http.get('/v1/whoami').set(bearer(a.token)).expect(200);
    await audit.flushRequests();
    expect(await requestsOfB()).toBe(before + 5);
    expect(await verify(b.tenant.apiKey)).toMatchObject({ valid: true });
    // App A: the damaged row and both request events (POST /v1/users, GET /v1/whoami), unsealed.
    expect((await rowsOf(a.tenant.appId)).filter((r) => r.seq === null).map((r) => r.type).sort()).toEqual(['http.request', 'http.request', 'user.created']);
  });

  it('a backlog longer than a flush takes is left to the sealer: the new events are written unsealed behind it, and the sealer chains all in order', async () => {
    const w = await world(s);
    await audit.flushRequests();
    await audit.seal(w.tenant.appId);
    await backlog(w.tenant.appId, 600);
    await new Promise((r) => setTimeout(r, 5));
    await s.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    await audit.flushRequests();
    const afterFlush = await rowsOf(w.tenant.appId);
    expect(afterFlush.filter((r) => r.seq === null).length, 'the backlog and the new request event, unsealed').toBe(601);
    await audit.seal(w.tenant.appId);
    const rows = await rowsOf(w.tenant.appId);
    expect(rows.filter((r) => r.seq === null)).toEqual([]);
    expect(outOfOrder(rows)).toEqual([]);
    expect(rows.at(-1)!.type).toBe('http.request');
    expect(await verify(w.tenant.apiKey)).toMatchObject({ valid: true, count: rows.length });
  });

  it('one flush seals a bounded backlog over all its apps, however many apps have one', async () => {
    const apps = await Promise.all(Array.from({ length: 12 }, () => world(s)));
    for (const w of apps) await audit.seal(w.tenant.appId);
    for (const w of apps) {
      await backlog(w.tenant.appId, 100);
      await s.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    }
    await audit.flushRequests();
    let backlogSealed = 0;
    for (const w of apps) {
      const rows = await rowsOf(w.tenant.appId);
      const request = rows.filter((r) => r.type === 'http.request').at(-1)!;
      if (request.seq !== null) backlogSealed += rows.filter((r) => r.type === 'step_up.expired' && r.seq !== null).length;
      else expect(rows.filter((r) => r.type === 'step_up.expired' && r.seq === null).length, 'an app left to the sealer keeps its whole backlog').toBe(100);
    }
    // 256 backlog rows per flush at most: two apps' backlogs of 100, not twelve.
    expect(backlogSealed).toBe(200);
    await audit.sealAll();
    for (const w of apps) expect(await verify(w.tenant.apiKey)).toMatchObject({ valid: true });
  });

  it('a chain sealed further while it is being checked is valid: the check covers the head it read first, the rows sealed after it are for the next check', async () => {
    const w = await world(s);
    await backlog(w.tenant.appId, 5);
    await audit.seal(w.tenant.appId);
    const repo = s.app.get(AuditRepository);
    const sealOne = async () => {
      await backlog(w.tenant.appId, 1);
      await audit.seal(w.tenant.appId);
    };
    // Flushes and sealers go on during a check: an event is sealed right before the head is read,
    // and another after the check's first page.
    const head = vi.spyOn(repo, 'head').mockImplementationOnce(async (appId) => {
      await sealOne();
      head.mockRestore();
      return repo.head(appId);
    });
    const page = vi.spyOn(repo, 'page').mockImplementationOnce(async (...args) => {
      page.mockRestore();
      const rows = await repo.page(...args);
      await sealOne();
      return rows;
    });
    try {
      const first = await audit.verify(w.tenant.appId);
      expect(first).toMatchObject({ valid: true });
      expect(first.firstBadSeq).toBeUndefined();
      const rows = await rowsOf(w.tenant.appId);
      expect(rows.filter((r) => r.seq === null)).toEqual([]);
      expect(first.count).toBe(rows.length - 1);
      expect(await audit.verify(w.tenant.appId)).toMatchObject({ valid: true, count: rows.length });
    } finally {
      vi.restoreAllMocks();
    }
  });

  /** A copy of the app's sealed row `from`, stored at `seq` (chained after `from`), without moving the head. */
  const forgeRow = async (appId: string, from: number, seq: number) => {
    const [row] = (await ds.query(sql('SELECT * FROM audit_events WHERE app_id = ? AND seq = ?'), [appId, from])) as Record<string, unknown>[];
    const forged: Record<string, unknown> = { ...row, id: `${String(row.id)}x${seq}`.replace('.', '_'), seq, prev_hash: row.hash, resource: 'FORGED' };
    const cols = Object.keys(forged);
    await ds.query(sql(`INSERT INTO audit_events (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`), cols.map((c) => forged[c]));
  };

  it('a sealed row past the chain head (added behind the sealer) is reported, also once the app has new events to seal: never a 500, and the CLI check goes on to the other apps', async () => {
    const w = await world(s);
    const other = await world(s);
    await backlog(w.tenant.appId, 3);
    await audit.seal(w.tenant.appId);
    const check = await audit.verify(w.tenant.appId);
    expect(check).toMatchObject({ valid: true });
    await forgeRow(w.tenant.appId, check.count, check.count + 1);
    expect(await audit.verify(w.tenant.appId)).toMatchObject({ valid: false, firstBadSeq: check.count + 1 });
    // A new event of the app: sealing it would take the forged row's seq.
    await backlog(w.tenant.appId, 1);
    expect(await verify(w.tenant.apiKey)).toMatchObject({ valid: false, firstBadSeq: check.count + 1 });
    const listed = (await s.http.get('/v1/audit-events').query({ limit: 200 }).set(bearer(w.tenant.apiKey)).expect(200)).body;
    expect(listed.events.length).toBeGreaterThan(0);
    // The user's dashboard activity reads the same way.
    expect((await audit.listForUser(w.tenant.appId, w.userId, {})).events.length).toBeGreaterThan(0);
    const all = await audit.verifyAll();
    expect(all.find((r) => r.appId === w.tenant.appId)?.check).toMatchObject({ valid: false, firstBadSeq: check.count + 1 });
    expect(all.find((r) => r.appId === other.tenant.appId)?.check).toMatchObject({ valid: true });
  });

  it('a sealed row below seq 1, which the walk from 1 does not read, is reported', async () => {
    const w = await world(s);
    await backlog(w.tenant.appId, 3);
    await audit.seal(w.tenant.appId);
    await forgeRow(w.tenant.appId, 1, 0);
    expect(await audit.verify(w.tenant.appId)).toMatchObject({ valid: false, firstBadSeq: 1 });
  });

  it('sealed rows of an app whose chain head was deleted are reported; a chain whose first rows were sealed after its head was read is not', async () => {
    const w = await world(s);
    await backlog(w.tenant.appId, 3);
    await audit.seal(w.tenant.appId);
    // The head was read before the app's first seal, which then committed rows and head together.
    const repo = s.app.get(AuditRepository);
    vi.spyOn(repo, 'head').mockResolvedValueOnce(null);
    try {
      expect(await audit.verify(w.tenant.appId)).toMatchObject({ valid: true, count: 0 });
    } finally {
      vi.restoreAllMocks();
    }
    await ds.query(sql('DELETE FROM audit_heads WHERE app_id = ?'), [w.tenant.appId]);
    expect(await audit.verify(w.tenant.appId)).toMatchObject({ valid: false, firstBadSeq: 1 });
  });

  it.skipIf(usingPostgres())('SQLite: a row at a fractional seq right after a page of the check (1000.5) is reported', async () => {
    const w = await world(s);
    await backlog(w.tenant.appId, 1_001);
    await audit.seal(w.tenant.appId);
    expect(await audit.verify(w.tenant.appId)).toMatchObject({ valid: true });
    await forgeRow(w.tenant.appId, 1_000, 1_000.5);
    expect(await audit.verify(w.tenant.appId)).toMatchObject({ valid: false });
  });

  it.skipIf(usingPostgres())('SQLite, one connection: a request event queued while a state change holds the connection is chained before that change’s newer event', async () => {
    const w = await world(s);
    await audit.flushRequests();
    await audit.seal(w.tenant.appId);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const request = (requestId: string) => audit.recordRequest({ appId: w.tenant.appId, actorType: 'app', actorId: w.tenant.appId, requestId }, '/v1/x', 'GET', 200);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    // A state change holds the one connection; it writes its event only after R2 is queued.
    let entered!: () => void;
    const holding = new Promise<void>((resolve) => (entered = resolve));
    const change = ds.transaction(async (m) => {
      await m.query('SELECT 1');
      entered();
      await gate;
      await audit.record(m, { appId: w.tenant.appId, type: 'user.updated', outcome: 'success' });
    });
    await holding;
    request('r1');
    const flushed = audit.flushRequests();
    await sleep(3);
    request('r2');
    await sleep(3);
    open();
    await Promise.all([change, flushed]);
    const tail: { type: string; request_id: string | null }[] = await ds.query(sql('SELECT type, request_id FROM audit_events WHERE app_id = ? AND seq IS NOT NULL ORDER BY seq DESC LIMIT 3'), [w.tenant.appId]);
    expect(tail.reverse().map((r) => r.request_id ?? r.type)).toEqual(['r1', 'r2', 'user.updated']);
    expect(outOfOrder(await rowsOf(w.tenant.appId))).toEqual([]);
  });

  it.skipIf(usingPostgres())('SQLite, one connection: another process committing between the flush’s first read and its first write (the CLI beside the service) costs no request event', async () => {
    const a = await world(s);
    const b = await world(s);
    await audit.flushRequests();
    await audit.sealAll();
    const requests = async (appId: string) => (await rowsOf(appId)).filter((r) => r.type === 'http.request').length;
    const before = [await requests(a.tenant.appId), await requests(b.tenant.appId)];
    for (const w of [a, b]) for (let i = 0; i < 3; i++) await s.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    const other = new Database((ds.options as { database: string }).database);
    other.pragma('busy_timeout = 0');
    let statements = 0;
    let otherWrite = 'not tried';
    // The other process writes as the flush is about to run its second statement.
    const interleave = () => {
      if (++statements !== 2) return;
      try {
        other.prepare("INSERT INTO audit_heads (app_id, last_seq, last_hash) VALUES ('app_cli_' || hex(randomblob(4)), 0, '0')").run();
        otherWrite = 'committed';
      } catch (err) {
        otherWrite = String(err);
      }
    };
    try {
      await watchingQueries(interleave, () => audit.flushRequests());
    } finally {
      other.close();
    }
    // The flush holds the write lock from its first statement: the other writer is the one refused.
    expect(otherWrite).toMatch(/locked|busy/i);
    expect([(await requests(a.tenant.appId)) - before[0], (await requests(b.tenant.appId)) - before[1]]).toEqual([3, 3]);
  });

  it.skipIf(usingPostgres())('SQLite, one connection: a backlog beyond the flush’s budget is counted on the index, not read', async () => {
    const apps = await Promise.all(Array.from({ length: 6 }, () => world(s)));
    await audit.flushRequests();
    for (const w of apps) await audit.seal(w.tenant.appId);
    for (const w of apps) {
      await backlog(w.tenant.appId, 300);
      await s.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    }
    const reads: string[] = [];
    await watchingQueries((q) => void (/ORDER BY at, id LIMIT/.test(q) && reads.push(q)), () => audit.flushRequests());
    expect(reads).toEqual([]);
    for (const w of apps) expect((await rowsOf(w.tenant.appId)).filter((r) => r.seq === null).length).toBe(301);
  });

  it.runIf(usingPostgres())('PostgreSQL: a flush does not wait for a chain head another transaction holds: that app’s events are written unsealed, the others’ sealed, and the sealer chains them later', async () => {
    const held = await world(s);
    const free = await world(s);
    await audit.flushRequests();
    for (const w of [held, free]) await audit.seal(w.tenant.appId);
    const requests = async (appId: string) => (await rowsOf(appId)).filter((r) => r.type === 'http.request').length;
    const before = [await requests(held.tenant.appId), await requests(free.tenant.appId)];
    const holder = ds.createQueryRunner();
    await holder.connect();
    try {
      // Held as a sealer holds it: locked, then updated, not yet committed.
      await holder.startTransaction();
      await holder.query('SELECT 1 FROM audit_heads WHERE app_id = $1 FOR UPDATE', [held.tenant.appId]);
      await holder.query('UPDATE audit_heads SET last_seq = last_seq WHERE app_id = $1', [held.tenant.appId]);
      for (const w of [held, free]) for (let i = 0; i < 3; i++) await s.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
      const started = Date.now();
      await audit.flushRequests();
      expect(Date.now() - started, 'the flush did not wait for the held head').toBeLessThan(500);
      expect((await rowsOf(held.tenant.appId)).filter((r) => r.seq === null).map((r) => r.type)).toEqual(['http.request', 'http.request', 'http.request']);
      expect((await rowsOf(free.tenant.appId)).filter((r) => r.seq === null)).toEqual([]);
      await holder.commitTransaction();
      await audit.seal(held.tenant.appId);
      for (const [i, w] of [held, free].entries()) {
        const rows = await rowsOf(w.tenant.appId);
        expect(rows.filter((r) => r.seq === null)).toEqual([]);
        expect(await requests(w.tenant.appId)).toBe(before[i] + 3);
        expect(await verify(w.tenant.apiKey)).toMatchObject({ valid: true, count: rows.length });
      }
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
  });

  it.runIf(usingPostgres())('PostgreSQL: a flush whose sealed write fails (a new app’s head held past the lock timeout) writes its events unsealed, none lost, and the sealer chains them', async () => {
    const appId = `app_zz_fallback_${Date.now()}`;
    const holder = ds.createQueryRunner();
    await holder.connect();
    try {
      // Another transaction is creating this app's head and has not committed: the flush's head insert waits for it.
      await holder.startTransaction();
      await holder.query("INSERT INTO audit_heads (app_id, last_seq, last_hash) VALUES ($1, 0, '0')", [appId]);
      for (const requestId of ['f1', 'f2']) audit.recordRequest({ appId, actorType: 'app', actorId: appId, requestId }, '/v1/x', 'GET', 200);
      const started = Date.now();
      await audit.flushRequests();
      expect(Date.now() - started, 'the lock timeout, then the fallback').toBeGreaterThanOrEqual(900);
      expect((await rowsOf(appId)).map((r) => [r.type, r.seq])).toEqual([['http.request', null], ['http.request', null]]);
      await holder.rollbackTransaction();
      await audit.seal(appId);
      const rows = await rowsOf(appId);
      expect(rows.map((r) => r.seq)).toEqual([1, 2]);
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
  });

  it.runIf(usingPostgres())('PostgreSQL: two instances flushing the same apps at once, and a sealer: every event chained once, no seq twice, and the chains verify', async () => {
    const s2 = await startApp(db.env);
    try {
      const audit2 = s2.app.get(AuditService);
      const timers = audit2 as unknown as { timer: NodeJS.Timeout; flushTimer: NodeJS.Timeout };
      clearInterval(timers.timer);
      clearInterval(timers.flushTimer);
      const apps = [await world(s), await world(s), await world(s)];
      for (let round = 0; round < 5; round++) {
        for (const w of apps) {
          await createUser(s, w.tenant);
          for (const inst of [s, s2]) for (let i = 0; i < 4; i++) await inst.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
        }
        await Promise.all([audit.flushRequests(), audit2.flushRequests(), audit2.sealAll()]);
      }
      // What a flush found held, it left to the sealer.
      await audit.sealAll();
      for (const w of apps) {
        const rows = await rowsOf(w.tenant.appId);
        expect(rows.filter((r) => r.seq === null), 'every event chained').toEqual([]);
        expect(rows.filter((r) => r.type === 'http.request').length).toBeGreaterThanOrEqual(40);
        expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
        expect(await verify(w.tenant.apiKey)).toMatchObject({ valid: true, count: rows.length });
      }
    } finally {
      await s2.close();
    }
  });

  it('hashes each string as the row stores it: a lone surrogate (stored as U+FFFD) does not break the chain', async () => {
    const w = await world(s);
    await audit.flushRequests();
    audit.recordRequest({ appId: w.tenant.appId, actorType: 'app', actorId: w.tenant.appId, requestId: 'r\ud800' }, '/v1/x', 'GET', 200);
    await audit.flushRequests();
    expect((await rowsOf(w.tenant.appId)).filter((r) => r.seq === null)).toEqual([]);
    expect(await verify(w.tenant.apiKey)).toMatchObject({ valid: true });
  });
});

describe('anti push-fatigue', () => {
  it('after 3 denials within the window the agent is cooled down (429 agent_cooldown) and the app gets an event', async () => {
    const h = await human(t);
    for (const r of ['x1', 'x2', 'x3']) {
      const s = await createStepUp(t, h, { resource: r }).expect(201);
      await t.http.post(`/v1/approvals/${approvalToken(s.body.approvalUrl)}/deny`).send({}).expect(200);
    }
    const res = await createStepUp(t, h, { resource: 'x4' }).expect(429);
    expect(res.body.code).toBe('agent_cooldown');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(800);
    const outbox = await t.app.get(DataSource).createQueryBuilder().select('o.type', 'type').from('outbox', 'o').where('o.app_id = :a', { a: h.tenant.appId }).getRawMany();
    expect(outbox.map((o) => o.type)).toContain('agent.cooldown');
    // After the cooldown the agent may ask again.
    t.clock.advance(901_000);
    try {
      // (the old access token expired meanwhile: a fresh one)
      await createStepUp(t, { ...h, token: await agentToken(t, h.agent) }, { resource: 'x5' }).expect(201);
    } finally {
      t.clock.reset();
    }
  });

  it('the identical pending request pushes nothing new, and the pending cap holds', async () => {
    const h = await human(t);
    await createStepUp(t, h, { resource: 'same' }).expect(201);
    for (let i = 0; i < 3; i++) await createStepUp(t, h, { resource: 'same' }).expect(200);
    const created = (await events(h, { type: 'step_up.created' })).events;
    expect(created).toHaveLength(1);
  });
});

describe('auto-suspend', () => {
  it('suspends an agent denied past the threshold', async () => {
    const t2 = await startApp({ COOLDOWN_AFTER_DENIALS: '10', AUTO_SUSPEND_AFTER_DENIALS: '2' });
    try {
      const h = await human(t2);
      for (const r of ['s1', 's2']) {
        const s = await createStepUp(t2, h, { resource: r }).expect(201);
        await t2.http.post(`/v1/approvals/${approvalToken(s.body.approvalUrl)}/deny`).send({}).expect(200);
      }
      expect((await t2.http.get(`/v1/agents/${h.agent.id}`).set(bearer(h.tenant.apiKey)).expect(200)).body.status).toBe('suspended');
      await t2.http.get('/v1/whoami').set(bearer(h.token)).expect(401);
    } finally {
      await t2.close();
    }
  });
});

describe('no secret in the audit trail or the logs', () => {
  it('none of the secrets this run used appears in any audit event or captured log line', async () => {
    const tenant = await createTenant(t);
    const h = await human(t);
    const created = await createStepUp(t, h, { resource: 'secret-check' }).expect(201);
    const code = (await import('./support/totp.js')).totpCode;
    const usedCode = await code(h.totpSecret);
    await expectStatus(approveWithCode(t, h, created.body.approvalUrl, usedCode), 200);
    const fetched = await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200);
    await t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token: fetched.body.mfaProxyToken, action: 'files:delete', resource: 'secret-check' }).expect(200);
    // Failures too: a wrong secret and a bad token.
    await t.http.post('/oauth/token').auth(h.agent.id, `${h.agent.clientSecret}x`).type('form').send({ grant_type: 'client_credentials' }).expect(401);
    await t.http.get('/v1/whoami').set(bearer(`${h.token}x`)).expect(401);
    await new Promise((r) => setTimeout(r, 200));

    const secrets = [
      tenant.apiKey, tenant.webhookSecret, h.tenant.apiKey, h.tenant.webhookSecret, h.agent.clientSecret, h.token, h.totpSecret,
      approvalToken(created.body.approvalUrl), fetched.body.mfaProxyToken, t.adminToken, `"${usedCode}"`,
    ];
    const { AuditService } = await import('../src/modules/audit/audit.service.js');
    await t.app.get(AuditService).sealAll();
    const rows = JSON.stringify(await t.app.get(DataSource).createQueryBuilder().select('*').from('audit_events', 'e').getRawMany());
    const logText = logs.join('');
    expect(logs.length).toBeGreaterThan(20);
    expect(logText).toContain('request completed');
    for (const secret of secrets) {
      expect(rows.includes(secret), `audit contains ${secret.slice(0, 12)}…`).toBe(false);
      expect(logText.includes(secret), `logs contain ${secret.slice(0, 12)}…`).toBe(false);
    }
  });
});
