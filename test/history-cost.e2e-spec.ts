import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StepUpsRepository } from '../src/modules/step-ups/step-ups.repository.js';
import { TxnChallengesRepository } from '../src/modules/txn-authorization/txn-challenges.repository.js';
import { OutboxRepository, PUBLISH_BATCH_SQLITE } from '../src/modules/events/outbox.repository.js';
import { AuditRepository } from '../src/modules/audit/audit.repository.js';
import { AuditService } from '../src/modules/audit/audit.service.js';
import { privateDatabase, startApp, usingPostgres, type TestApp } from './support/app.js';
import { integers, planOf, sorts, statementsDuring, tableAccesses, type Statement } from './support/query-plans.js';
import { createStepUp, human, type Human } from './support/step-up.js';

/**
 * Reads made on every request of their kind, or by a periodic job, on tables that grow with
 * history: each must read an index range as long as its answer (or its batch), however many
 * finished rows lie beside it. Checked on the plan each database makes for the statement the code
 * runs, with a long history and a few live rows; on PostgreSQL both as written (no statistics yet)
 * and after ANALYZE (the statistics autovacuum keeps).
 */

const DAY = 86_400_000;
const p = (i: number) => (usingPostgres() ? `$${i}` : '?');
const time = (expr: string) => (usingPostgres() ? `(${expr})::bigint` : `(${expr})`);
/** Parameter i, an epoch-ms time. */
const instant = (i: number) => (usingPostgres() ? `$${i}::bigint` : '?');

/** Copies of the one `table` row matching `where`, one per i in 1..n, with `set` (column → SQL over n.i) overriding columns. */
async function copies(ds: DataSource, table: string, where: string, params: unknown[], n: number, set: Record<string, string>): Promise<void> {
  const columns: string[] = usingPostgres()
    ? (await ds.query('SELECT column_name AS c FROM information_schema.columns WHERE table_name = $1', [table])).map((r: { c: string }) => r.c)
    : (await ds.query(`PRAGMA table_info(${table})`)).map((r: { name: string }) => r.name);
  await ds.query(
    `INSERT INTO ${table} (${columns.join(', ')}) SELECT ${columns.map((c) => set[c] ?? `t.${c}`).join(', ')} FROM (SELECT * FROM ${table} WHERE ${where} LIMIT 1) t, ${integers(n)}`,
    params,
  );
}

/** `s` reads `table` only by searching `index` (no scan of the table or of a whole index) and sorts nothing. */
async function expectReadThrough(ds: DataSource, s: Statement, table: string, index: string): Promise<void> {
  const accesses = await tableAccesses(ds, s, table);
  const why = planOf(s, accesses);
  expect(accesses.length, why).toBeGreaterThan(0);
  expect(accesses.map((a) => `${a.kind} ${a.index}`), why).toEqual(accesses.map(() => `search ${index}`));
  expect(await sorts(ds, s), why).toBe(false);
}

/** The plan checks run as the rows were written and, on PostgreSQL, again after ANALYZE. */
function inBothStates(checks: [string, () => Promise<void>][], analyze: () => Promise<void>): void {
  it.each(checks)('as written: %s', async (_name, check) => check());
  describe.skipIf(!usingPostgres())('after ANALYZE', () => {
    beforeAll(analyze, 60_000);
    it.each(checks)('%s', async (_name, check) => check());
  });
}

/** An app on a private database (no retention sweeps: the history a test writes stays), with a human and one pending step-up of theirs. */
async function appWithAStepUp(): Promise<{ db: Awaited<ReturnType<typeof privateDatabase>>; t: TestApp; ds: DataSource; h: Human }> {
  const db = await privateDatabase();
  const t = await startApp({ ...db.env, RETENTION_SWEEP_SECONDS: '0' });
  const h = await human(t);
  await createStepUp(t, h).expect(201);
  return { db, t, ds: t.app.get(DataSource), h };
}

describe('step-up reads cost what they return, not the history of step-ups', () => {
  let t: TestApp;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  let h: Human;
  let ds: DataSource;
  beforeAll(async () => {
    ({ db, t, ds, h } = await appWithAStepUp());
    // A month-old history of one agent's step-ups for one user, every one decided: only the
    // pending step-up above is live.
    const old = Date.now() - 30 * DAY;
    const history = (kind: string, n: number, set: Record<string, string>) =>
      copies(ds, 'step_ups', `app_id = ${p(1)}`, [h.tenant.appId], n, {
        id: `'stp_${kind}_' || n.i`, approval_token_hash: `'ath_${kind}_' || n.i`, token_jti: 'NULL', idempotency_key: 'NULL', backchannel_hash: 'NULL',
        created_at: time(`${old} + n.i`), expires_at: time(`${old} + 300000 + n.i`), decided_at: time(`${old} + 1000 + n.i`), ...set,
      });
    await history('used', 30_000, { status: "'approved'", token_jti: `'jti_used_' || n.i`, consumed_at: time(`${old} + 2000 + n.i`) });
    await history('sudo', 5_000, { status: "'approved'", grant_type: "'sudo'" });
    await history('denied', 10_000, { status: "'denied'", reason: "'denied_by_user'" });
    await history('expired', 5_000, { status: "'expired'", reason: "'expired'", decided_at: time(`${old} + 300000 + n.i`) });
  }, 300_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  }, 60_000);

  const onStepUps = (statements: Statement[]) => statements.filter((s) => /FROM "step_ups"/.test(s.sql));

  inBothStates(
    [
      [
        "a step-up's creation reads the agent's denials of the fatigue window through ix_step_ups_agent_denied",
        async () => {
          const statements = await statementsDuring(ds, () => createStepUp(t, h, { details: { at: Date.now() } }).expect(201));
          const denials = onStepUps(statements).filter((s) => /'denied'/.test(s.sql));
          expect(denials.length).toBeGreaterThan(0);
          for (const s of denials) await expectReadThrough(ds, s, 'step_ups', 'ix_step_ups_agent_denied');
        },
      ],
      [
        "a user's step-ups, newest first, are the first entries of ix_step_ups_user_created",
        async () => {
          let rows = 0;
          const statements = await statementsDuring(ds, async () => (rows = (await t.app.get(StepUpsRepository).ofUser(h.tenant.appId, h.userId, false, 50)).length));
          expect(rows).toBe(50);
          expect(onStepUps(statements)).toHaveLength(1);
          await expectReadThrough(ds, onStepUps(statements)[0], 'step_ups', 'ix_step_ups_user_created');
        },
      ],
      [
        "a user's pending step-ups are read from an index range of pending step-ups, not from the user's history in time order",
        async () => {
          let rows = 0;
          const statements = await statementsDuring(ds, async () => (rows = (await t.app.get(StepUpsRepository).ofUser(h.tenant.appId, h.userId, true, 50)).length));
          expect(rows).toBeGreaterThan(0);
          expect(onStepUps(statements)).toHaveLength(1);
          // The user's pending range (in order), or every live pending step-up (PostgreSQL, with
          // statistics, may take that and sort the few it finds): either way only live rows.
          const accesses = await tableAccesses(ds, onStepUps(statements)[0], 'step_ups');
          const why = planOf(onStepUps(statements)[0], accesses);
          expect(accesses.length, why).toBeGreaterThan(0);
          for (const a of accesses) expect(a.kind === 'search' && /status=\?|\(status\)::text = 'pending'/.test(a.detail), why).toBe(true);
        },
      ],
      [
        "a user's active sudo grants are read from the recent range of ix_step_ups_user_sudo",
        async () => {
          let rows = -1;
          const statements = await statementsDuring(ds, async () => (rows = (await t.app.get(StepUpsRepository).approvedSudoOfUser(h.tenant.appId, h.userId, Date.now() - 901_000)).length));
          expect(rows).toBe(0);
          expect(onStepUps(statements)).toHaveLength(1);
          await expectReadThrough(ds, onStepUps(statements)[0], 'step_ups', 'ix_step_ups_user_sudo');
        },
      ],
    ],
    async () => void (await ds.query('ANALYZE step_ups')),
  );
});

describe('the transaction challenge purge reads its batch, not the expired history', () => {
  let t: TestApp;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  let ds: DataSource;
  const EXPIRED = 30_000;
  beforeAll(async () => {
    db = await privateDatabase();
    t = await startApp({ ...db.env, RETENTION_SWEEP_SECONDS: '0' });
    ds = t.app.get(DataSource);
    const at = Date.now() - 30 * DAY;
    // Challenges that expired long ago (their purge fell behind), and a few live ones.
    await ds.query(
      `INSERT INTO txn_challenges (app_id, jti, agent_id, step_up_id, expires_at, created_at)
       SELECT 'app_txnhist', 'jti_' || n.i, 'agt_txnhist', NULL, CASE WHEN n.i > ${EXPIRED} THEN ${instant(1)} ELSE ${instant(2)} + n.i END, ${instant(3)} + n.i FROM ${integers(EXPIRED + 100)}`,
      [Date.now() + DAY, at, at],
    );
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  }, 60_000);

  inBothStates(
    [
      [
        'a batch reads the oldest expired challenges through ix_txn_challenges_expires and deletes each by its key',
        async () => {
          let purged = 0;
          const statements = await statementsDuring(ds, async () => (purged = await t.app.get(TxnChallengesRepository).purgeExpired(Date.now() - DAY, 200)));
          expect(purged).toBe(200);
          const reads = statements.filter((s) => /^\s*SELECT/i.test(s.sql) && /"txn_challenges"/.test(s.sql));
          expect(reads).toHaveLength(1);
          await expectReadThrough(ds, reads[0], 'txn_challenges', 'ix_txn_challenges_expires');
          const deletes = statements.filter((s) => /^\s*DELETE/i.test(s.sql));
          expect(deletes).toHaveLength(200);
          for (const s of deletes.slice(0, 3)) {
            const accesses = await tableAccesses(ds, s, 'txn_challenges');
            expect(accesses.map((a) => a.kind), planOf(s, accesses)).toEqual(['search']);
          }
        },
      ],
    ],
    async () => void (await ds.query('ANALYZE txn_challenges')),
  );
});

describe("an app's delivery list reads its page, not the app's history of events", () => {
  let t: TestApp;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  let ds: DataSource;
  let appId: string;
  const old = Date.now() - 3 * DAY;
  beforeAll(async () => {
    let h: Human;
    ({ db, t, ds, h } = await appWithAStepUp());
    appId = h.tenant.appId;
    // Days of delivered events, and three that failed among them; and many failed events of other apps.
    const history = (kind: string, n: number, set: Record<string, string>) =>
      copies(ds, 'outbox', `app_id = ${p(1)}`, [appId], n, { id: `'evt_${kind}_' || n.i`, created_at: time(`${old} + n.i * 7`), stream_seq: 'NULL', ...set });
    await history('delivered', 30_000, { delivery_status: "'delivered'", delivered_at: time(`${old} + n.i * 7 + 50`), attempts: '1' });
    await history('failed', 3, { delivery_status: "'failed'", attempts: '10', created_at: time(`${old} + n.i * 70000`) });
    await history('elsewhere', 20_000, { app_id: `'app_elsewhere_' || (n.i % 20)`, delivery_status: "'failed'", attempts: '10' });
  }, 300_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  }, 60_000);

  const listed = async (q: Parameters<OutboxRepository['deliveries']>[1]): Promise<Statement> => {
    let rows = 0;
    const statements = (await statementsDuring(ds, async () => (rows = (await t.app.get(OutboxRepository).deliveries(appId, q)).length))).filter((s) => /FROM "outbox"/.test(s.sql));
    expect(rows).toBeGreaterThan(0);
    expect(statements).toHaveLength(1);
    return statements[0];
  };

  inBothStates(
    [
      ['the newest page is the first entries of ix_outbox_app_created_id', async () => expectReadThrough(ds, await listed({ limit: 51 }), 'outbox', 'ix_outbox_app_created_id')],
      [
        'a page after a cursor (created_at, id) starts at that entry of ix_outbox_app_created_id',
        async () => expectReadThrough(ds, await listed({ before: { createdAt: old + 15_000 * 7, id: 'evt_delivered_15000' }, limit: 51 }), 'outbox', 'ix_outbox_app_created_id'),
      ],
      ["the app's failed events are read from ix_outbox_app_failed, not found among its delivered nor among other apps' failed", async () => expectReadThrough(ds, await listed({ status: 'failed', limit: 51 }), 'outbox', 'ix_outbox_app_failed')],
    ],
    async () => void (await ds.query('ANALYZE outbox')),
  );
});

describe.skipIf(usingPostgres())('the SQLite outbox publisher reads its batch, not the unpublished backlog', () => {
  let t: TestApp;
  let ds: DataSource;
  beforeAll(async () => {
    t = await startApp();
    ds = t.app.get(DataSource);
  }, 60_000);
  afterAll(async () => t?.close(), 60_000);

  it('takes the first rows in rowid order through ix_outbox_unpublished_order, without sorting the backlog', async () => {
    await expectReadThrough(ds, { sql: PUBLISH_BATCH_SQLITE, params: [500] }, 'outbox', 'ix_outbox_unpublished_order');
    // The (created_at, id) index it replaces on SQLite is gone: one index fewer to write per event.
    const indexes: { name: string }[] = await ds.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'");
    expect(indexes.map((i) => i.name)).toContain('ix_outbox_unpublished_order');
    expect(indexes.map((i) => i.name)).not.toContain('ix_outbox_unpublished');
  });
});

describe('sealed audit events and published outbox events are read from indexes that hold only those', () => {
  let t: TestApp;
  let db: Awaited<ReturnType<typeof privateDatabase>>;
  let ds: DataSource;
  let h: Human;
  beforeAll(async () => {
    ({ db, t, ds, h } = await appWithAStepUp());
    await t.app.get(AuditService).seal(h.tenant.appId);
    // The step-up's events, published by the publisher after their commit.
    for (let i = 0; i < 100 && (await ds.query(`SELECT 1 FROM outbox WHERE app_id = ${p(1)} AND stream_seq IS NOT NULL`, [h.tenant.appId])).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const old = Date.now() - 3 * DAY;
    // A history of the app's sealed events (one in ten of the user, the rest of 50 others), and of
    // published events (one in ten of the app, the rest of 7 others), past every number in use.
    await copies(ds, 'audit_events', `app_id = ${p(1)} AND seq IS NOT NULL`, [h.tenant.appId], 20_000, {
      id: `'aud_history_' || n.i`, seq: time('1000000 + n.i'), at: time(`${old} + n.i`), type: "'step_up.created'",
      user_id: `CASE WHEN n.i % 10 = 0 THEN '${h.userId}' ELSE 'usr_other_' || (n.i % 50) END`,
    });
    await copies(ds, 'outbox', `app_id = ${p(1)} AND stream_seq IS NOT NULL`, [h.tenant.appId], 20_000, {
      id: `'evt_history_' || n.i`, stream_seq: time('1000000 + n.i'), app_id: `CASE WHEN n.i % 10 = 0 THEN '${h.tenant.appId}' ELSE 'app_elsewhere_' || (n.i % 7) END`,
    });
    // And a backlog of pending deliveries, due in a day (the dispatcher leaves them be), among them.
    await copies(ds, 'outbox', `app_id = ${p(1)} AND stream_seq IS NOT NULL`, [h.tenant.appId], 5_000, {
      id: `'evt_backlog_' || n.i`, stream_seq: time('2000000 + n.i'), delivery_status: "'pending'", next_attempt_at: time(`${Date.now() + DAY} + n.i`), delivered_at: 'NULL',
      app_id: `CASE WHEN n.i % 10 = 0 THEN '${h.tenant.appId}' ELSE 'app_elsewhere_' || (n.i % 7) END`,
    });
  }, 300_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  }, 60_000);

  /** The statements on `table` run while `fn` runs that match `kind` (the service's own jobs share the connection's log: same kind, same check). */
  const during = async (fn: () => Promise<unknown>, table: string, kind: RegExp): Promise<Statement[]> => {
    const statements = (await statementsDuring(ds, fn)).filter((s) => new RegExp(`FROM "?${table}"?`).test(s.sql) && kind.test(s.sql));
    expect(statements.length).toBeGreaterThan(0);
    return statements;
  };

  it('each of the four indexes is partial: a row enters it once, when it is numbered (not NULL first, then again)', async () => {
    const expected = { ux_audit_events_app_seq: 'seq', ix_audit_events_app_user_seq: 'seq', ux_outbox_stream_seq: 'stream_seq', ix_outbox_app_stream_seq: 'stream_seq' };
    for (const [name, column] of Object.entries(expected)) {
      const [row]: { def: string }[] = usingPostgres()
        ? await ds.query('SELECT indexdef AS def FROM pg_indexes WHERE indexname = $1', [name])
        : await ds.query("SELECT sql AS def FROM sqlite_master WHERE type = 'index' AND name = ?", [name]);
      expect(row?.def, name).toMatch(new RegExp(`WHERE \\(?${column} IS NOT NULL\\)?`, 'i'));
    }
  });

  it('ix_outbox_due (every outbox row, read by nothing) is gone', async () => {
    const rows: unknown[] = usingPostgres()
      ? await ds.query("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_outbox_due'")
      : await ds.query("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'ix_outbox_due'");
    expect(rows).toEqual([]);
  });

  it('numbers stay unique per app (audit) and overall (outbox); any number of rows wait unnumbered', async () => {
    const [sealed] = await ds.query(`SELECT id, seq FROM audit_events WHERE app_id = ${p(1)} AND seq IS NOT NULL ORDER BY seq LIMIT 1`, [h.tenant.appId]);
    await expect(copies(ds, 'audit_events', `id = ${p(1)}`, [sealed.id], 1, { id: "'aud_duplicate'" })).rejects.toThrow(/unique|duplicate/i);
    await copies(ds, 'audit_events', `id = ${p(1)}`, [sealed.id], 2, { id: `'aud_unsealed_' || n.i`, seq: 'NULL', prev_hash: 'NULL', hash: 'NULL' });
    const [published] = await ds.query('SELECT id FROM outbox WHERE stream_seq IS NOT NULL ORDER BY stream_seq LIMIT 1');
    await expect(copies(ds, 'outbox', `id = ${p(1)}`, [published.id], 1, { id: "'evt_duplicate'" })).rejects.toThrow(/unique|duplicate/i);
    // Removed again so the sealer does not chain them into the app's history.
    await ds.query("DELETE FROM audit_events WHERE id LIKE 'aud_unsealed_%'");
  });

  /** `s` reads `table` only by searching one of `indexes` (no scan of the table or of a whole index). */
  const searchesOneOf = async (statements: Statement[], table: string, indexes: (string | RegExp)[]) => {
    for (const s of statements) {
      const accesses = await tableAccesses(ds, s, table);
      const why = planOf(s, accesses);
      expect(accesses.length, why).toBeGreaterThan(0);
      for (const a of accesses) expect(a.kind === 'search' && indexes.some((i) => (typeof i === 'string' ? i === a.index : i.test(a.index ?? ''))), why).toBe(true);
    }
  };
  /** The primary key, by which an UPDATE reaches the rows its subquery chose. */
  const OUTBOX_PK = /^(PK_|sqlite_autoindex_outbox_)/;
  const AUDIT_SEQ = ['ux_audit_events_app_seq', 'ix_audit_events_app_user_seq'];
  const OUTBOX_SEQ = ['ux_outbox_stream_seq', 'ix_outbox_app_stream_seq'];

  // Which of the two indexes, and whether the range found is sorted, is the planner's choice and
  // was before they were partial (SQLite without statistics reads a user's page from the app's
  // range; PostgreSQL may take one app's published range from the global one); what must hold is
  // that no reader falls back to a scan now that unnumbered rows are not in them.
  inBothStates(
    [
      ["a page of the app's audit log after a seq", async () => searchesOneOf(await during(() => t.app.get(AuditRepository).page(h.tenant.appId, 1_010_000, 50), 'audit_events', /ORDER BY .*"seq" ASC/), 'audit_events', AUDIT_SEQ)],
      ["the app's sealed range", async () => searchesOneOf(await during(() => t.app.get(AuditRepository).sealedSeqRange(h.tenant.appId), 'audit_events', /MIN\(/), 'audit_events', AUDIT_SEQ)],
      ["a user's events, newest first: the first page", async () => searchesOneOf(await during(() => t.app.get(AuditRepository).userPageDesc(h.tenant.appId, h.userId, null, 50), 'audit_events', /"e"\."user_id" = /), 'audit_events', AUDIT_SEQ)],
      ["a user's events, newest first: a page before a seq", async () => searchesOneOf(await during(() => t.app.get(AuditRepository).userPageDesc(h.tenant.appId, h.userId, 1_010_000, 50), 'audit_events', /"e"\."user_id" = /), 'audit_events', AUDIT_SEQ)],
      ['the published events after a position', async () => searchesOneOf(await during(() => t.app.get(OutboxRepository).published(1_010_000, 100), 'outbox', /stream_seq"? > /), 'outbox', OUTBOX_SEQ)],
      ["one app's published events in (after, upTo]", async () => searchesOneOf(await during(() => t.app.get(OutboxRepository).publishedForApp(h.tenant.appId, 1_010_000, 1_010_100, 100), 'outbox', /stream_seq"? <= /), 'outbox', OUTBOX_SEQ)],
      // Without ix_outbox_due, the dispatcher's reads of due rows (a backlog of pending rows not yet due, below) keep to the pending rows.
      ['the apps with due deliveries', async () => searchesOneOf(await during(() => t.app.get(OutboxRepository).appsWithDue(Date.now(), 1000), 'outbox', /WITH RECURSIVE a\(app_id\)/), 'outbox', ['ix_outbox_pending_app'])],
      // Not the CIBA ping and Web Push claims (claimDirect, their own partial indexes), which the app's background workers may run in the same moment.
      ["a claim of an app's due deliveries", async () => searchesOneOf(await during(() => t.app.get(OutboxRepository).claim([{ appId: h.tenant.appId, k: 10 }], Date.now(), Date.now() + 60_000, 'history-cost'), 'outbox', /claimed_until = .*claimed_by = (?![\s\S]*delivery_status = '(?:ping|push)')/), 'outbox', ['ix_outbox_pending_app', OUTBOX_PK])],
    ],
    async () => void (await ds.query('ANALYZE audit_events; ANALYZE outbox')),
  );
});
