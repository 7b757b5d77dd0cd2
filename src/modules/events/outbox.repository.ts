import { Injectable } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { DataSource, In, type EntityManager } from 'typeorm';
import type { QueryResultRow } from 'pg';
import { queryPrepared } from '../../database/pg-prepared.js';
import type { SqliteSession } from '../../database/sqlite-serial.js';
import { OutboxEntity } from './outbox.entity.js';

/** Arbitrary constant: the PostgreSQL advisory lock held by the one publisher that assigns `stream_seq`. */
const PUBLISH_LOCK = 727_002;
/** Marks a query runner whose transaction added events (QueryRunner.data). */
const ADDED = 'mfaProxyOutboxAdded';

/** The better-sqlite3 handle, for the one statement that must run with no transaction open (see publish). */
interface SqliteHandle {
  inTransaction: boolean;
  prepare(sql: string): { all(...p: unknown[]): unknown[]; get(...p: unknown[]): unknown; run(...p: unknown[]): unknown };
  transaction<T>(fn: () => T): () => T;
}

const INSERT_COLUMN_NAMES = ['id', 'app_id', 'type', 'payload', 'created_at', 'delivered_at', 'delivery_status', 'attempts', 'next_attempt_at', 'claimed_until', 'claimed_by', 'last_error', 'stream_seq'] as const;
const INSERT_COLUMNS = INSERT_COLUMN_NAMES.join(', ');
const INSERT_PG = `INSERT INTO outbox (${INSERT_COLUMNS}) VALUES (${Array.from({ length: 13 }, (_, i) => `$${i + 1}`).join(', ')})`;
/** SQLite: the publisher's next batch, in rowid order, read from ix_outbox_unpublished_order (migration 1765400000000). */
export const PUBLISH_BATCH_SQLITE = 'SELECT rowid AS r, delivery_status AS s FROM outbox INDEXED BY ix_outbox_unpublished_order WHERE stream_seq IS NULL ORDER BY rowid LIMIT ?';
const INSERT_SQLITE = `INSERT INTO outbox (${INSERT_COLUMNS}) VALUES (${Array(13).fill('?').join(', ')})`;
/** Many rows in one statement and one round trip (a batch of consumed tokens): one array per column. */
const INSERT_MANY_PG = `INSERT INTO outbox (${INSERT_COLUMNS}) SELECT * FROM unnest(${['varchar', 'varchar', 'varchar', 'text', 'bigint', 'bigint', 'varchar', 'int', 'bigint', 'bigint', 'varchar', 'text', 'bigint'].map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`;

const insertValues = (row: OutboxEntity): unknown[] => [
  row.id, row.appId, row.type, JSON.stringify(row.payload), row.createdAt, row.deliveredAt, row.deliveryStatus, row.attempts,
  row.nextAttemptAt, row.claimedUntil, row.claimedBy, row.lastError, row.streamSeq,
];

/** The statuses GET /v1/webhook-deliveries filters by, each its own SQL literal (OutboxRepository.deliveries). */
export const LISTED_STATUSES = { pending: 'pending', delivered: 'delivered', failed: 'failed', no_endpoint: 'no_endpoint' } as const satisfies Record<string, OutboxEntity['deliveryStatus']>;
export type ListedStatus = keyof typeof LISTED_STATUSES;

/** Rows per SQLite finish statement. */
const FINISH_CHUNK = 500;

/** The outcome of one delivery attempt (OutboxRepository.finishMany). */
/** Outbox rows delivered by their own dispatcher, not as webhooks (CIBA pings, Web Pushes). */
export type DirectDelivery = 'ping' | 'push';

export interface DeliveryOutcome {
  id: string;
  /** ping / ping_failed: a CIBA ping's own statuses (PingDispatcher); push / push_failed: a Web Push's (PushDispatcher). */
  status: 'pending' | 'delivered' | 'failed' | 'ping' | 'ping_failed' | 'push' | 'push_failed';
  deliveredAt: number | null;
  attempts: number;
  lastError: string | null;
  /** When to try again (status pending); null keeps the row's own. */
  nextAttemptAt: number | null;
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** A row as the driver returns it (RETURNING INSERT_COLUMNS: every column, named, so a prepared statement keeps its result type when a column is added) → the entity (the transformers of outbox.entity.ts, by hand). */
function fromRaw(r: Record<string, unknown>): OutboxEntity {
  return Object.assign(new OutboxEntity(), {
    id: r.id as string, appId: r.app_id as string, type: r.type as string, payload: JSON.parse(r.payload as string) as Record<string, unknown>,
    createdAt: Number(r.created_at), deliveredAt: num(r.delivered_at), deliveryStatus: r.delivery_status as OutboxEntity['deliveryStatus'],
    attempts: Number(r.attempts), nextAttemptAt: num(r.next_attempt_at), claimedUntil: num(r.claimed_until), claimedBy: (r.claimed_by as string | null) ?? null,
    lastError: (r.last_error as string | null) ?? null, streamSeq: num(r.stream_seq),
  });
}

/**
 * A batch size of the code, written into a prepared statement's text: a generic plan of `LIMIT $1`
 * guesses a tenth of the matching rows, and past a large unpublished backlog PostgreSQL's publisher
 * plan became a hash join over a scan of the whole outbox (203 ms against 13 ms).
 */
function batchLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`batch size must be a positive integer, got ${limit}`);
  return limit;
}

/** `pending`: whether any published row awaits a webhook delivery. */
export type PublishResult = { published: number; head: number; pending: boolean } | 'busy';

/**
 * Every query of the outbox: writes by the modules that cause events, publication (the stream
 * order), the stream's pages, and the webhook dispatcher's claims. The index each query relies on
 * is named beside it (migrations 1764360000000, 1764380000000, 1764450000000 and 1765400000000).
 */
@Injectable()
export class OutboxRepository {
  constructor(private readonly ds: DataSource) {}

  private get postgres(): boolean {
    return this.ds.options.type === 'postgres';
  }

  /**
   * Calls `fn` after the commit of every transaction in which `added` was called (at once for a
   * write outside a transaction): the publisher and the dispatchers wake when events become
   * visible, not before. With `only`, `fn` wakes only for commits that added rows of that status:
   * `pending` (webhook deliveries) or a direct delivery kind (a CIBA ping or a Web Push). The
   * consumes of a verify load add webhook events only, and must not send each direct dispatcher a
   * claim query per commit; nor the webhook dispatcher, when their app has no webhookUrl and they
   * are written finished (`no_endpoint`). On SQLite the one connection's savepoints commit too;
   * only the outermost commit counts.
   */
  onAddedCommitted(fn: () => void, only?: 'pending' | DirectDelivery): void {
    // Called from inside the committing transaction's async context: run `fn` in the context of
    // this registration instead, so work it starts is not taken for part of that transaction.
    const root = new AsyncResource('OutboxAddedCommitted');
    this.committed.push({ only, notify: () => root.runInAsyncScope(fn) });
    if (this.committed.length > 1) return;
    this.ds.subscribers.push({
      afterTransactionCommit: ({ queryRunner }) => {
        const kinds = queryRunner.data?.[ADDED] as Set<string> | undefined;
        if (!kinds || queryRunner.isTransactionActive) return;
        delete queryRunner.data[ADDED];
        this.notifyCommitted(kinds);
      },
      afterTransactionRollback: ({ queryRunner }) => {
        if (!queryRunner.isTransactionActive) delete queryRunner.data?.[ADDED];
      },
    });
  }

  private readonly committed: Array<{ only: 'pending' | DirectDelivery | undefined; notify: () => void }> = [];

  /** `kinds`: the delivery statuses of the rows the committed writes added. */
  private notifyCommitted(kinds: ReadonlySet<string>): void {
    for (const { only, notify } of this.committed) if (only === undefined || kinds.has(only)) notify();
  }

  /**
   * Calls `fn` after any update of the `apps` table through this process's DataSource (a webhook
   * URL or secret changed here): the dispatcher's cache of delivery targets is dropped at once.
   * Only the table name is read; the apps module's rows stay its own.
   */
  onAppsUpdated(fn: () => void): void {
    this.ds.subscribers.push({ afterUpdate: ({ metadata }) => void (metadata.tableName === 'apps' && fn()) });
  }

  /** Rows of these statuses were added by a statement already committed (outside a transaction). */
  addedBy(kinds: ReadonlySet<string>): void {
    this.notifyCommitted(kinds);
  }

  private added(m: EntityManager, rows: OutboxEntity[]): void {
    const kinds = new Set(rows.map((r) => r.deliveryStatus));
    const runner = m.queryRunner;
    if (runner?.isTransactionActive) {
      const pending = runner.data[ADDED] as Set<string> | undefined;
      runner.data[ADDED] = pending ? new Set([...pending, ...kinds]) : kinds;
    } else {
      this.notifyCommitted(kinds);
    }
  }

  /** Rows of a statement (UPDATE ... RETURNING included), on `m`'s transaction or a pooled connection. */
  private async records<T>(sql: string, params: unknown[], m?: EntityManager): Promise<T[]> {
    if (this.postgres) return queryPrepared<T & QueryResultRow>(m ?? this.ds, sql, params);
    const runner = m?.queryRunner ?? this.ds.createQueryRunner();
    try {
      return (await runner.query(sql, params, true)).records as T[];
    } finally {
      if (!m?.queryRunner) await runner.release();
    }
  }

  /**
   * One INSERT on the caller's transaction, written out: it runs inside request transactions, and
   * TypeORM's insert would build the statement each time and, on SQLite, read the row back.
   */
  async insert(m: EntityManager, row: OutboxEntity): Promise<void> {
    await m.query(this.postgres ? INSERT_PG : INSERT_SQLITE, insertValues(row));
    this.added(m, [row]);
  }

  /** PostgreSQL: an INSERT of one row per row of `relation`, each column an SQL expression over it, returning each row's delivery_status. */
  insertSelectSql(relation: string, values: Record<(typeof INSERT_COLUMN_NAMES)[number], string>): string {
    return `INSERT INTO outbox (${INSERT_COLUMNS}) SELECT ${INSERT_COLUMN_NAMES.map((c) => values[c]).join(', ')} FROM ${relation} RETURNING delivery_status`;
  }

  /** Several rows on the caller's transaction: one statement on PostgreSQL, one (cached) statement per row on SQLite. */
  async insertMany(m: EntityManager, rows: OutboxEntity[]): Promise<void> {
    if (rows.length === 0) return;
    if (this.postgres) {
      const values = rows.map(insertValues);
      await m.query(INSERT_MANY_PG, values[0].map((_, column) => values.map((v) => v[column])));
    } else {
      for (const row of rows) await m.query(INSERT_SQLITE, insertValues(row));
    }
    this.added(m, rows);
  }

  /** SQLite: rows in the caller's synchronous transaction (onSqliteConnection); the caller reports them with addedBy once it has committed. */
  insertManySqlite(db: SqliteSession, rows: OutboxEntity[]): void {
    for (const row of rows) db.run(INSERT_SQLITE, ...insertValues(row));
  }

  // --- Publication: the stream order -------------------------------------------------------

  /**
   * Gives committed, unpublished rows the next stream positions (counted in outbox_stream_head,
   * which retention does not touch, so a position is never handed out twice). Exactly one
   * publisher runs at a time per database, and its positions become visible in one commit, after
   * every earlier publisher's commit: so a reader that has seen position n has seen every position
   * below n, and a row whose transaction commits late simply gets a later position. Returns 'busy' when
   * another publisher holds the turn (PostgreSQL) or a transaction is open on the connection
   * (SQLite), so the caller tries again shortly. `probe` (PostgreSQL): first look whether there is
   * anything to publish, in one index probe, before opening a transaction.
   */
  async publish(limit: number, probe = true): Promise<PublishResult> {
    return this.postgres ? this.publishPostgres(limit, probe) : this.publishSqlite(limit);
  }

  /** `probe`: look for an unpublished row before taking the turn (the fallback tick; after a commit there are rows). */
  private async publishPostgres(limit: number, probe: boolean): Promise<PublishResult> {
    if (probe) {
      // Cheap when there is nothing to do: ix_outbox_unpublished is partial.
      const any = await queryPrepared(this.ds, 'SELECT 1 FROM outbox WHERE stream_seq IS NULL LIMIT 1', []);
      if (any.length === 0) return { published: 0, head: 0, pending: false };
    }
    return this.ds.transaction(async (m): Promise<PublishResult> => {
      const [{ locked }] = await m.query('SELECT pg_try_advisory_xact_lock($1) AS locked', [PUBLISH_LOCK]);
      if (!locked) return 'busy';
      // A statement after the lock sees every earlier publisher's commit (READ COMMITTED takes a
      // snapshot per statement), so the head row is current. Rows of transactions still open are
      // invisible here and wait for a later pass. Within one pass, (created_at, id). Rows another
      // transaction holds (the dispatcher recording outcomes) are skipped, not waited for: they
      // get a later position, as a late commit would, and the two statements, which lock their
      // rows in different orders, can never deadlock (one of them was aborted every few seconds
      // under load, and an aborted outcome batch is delivered again once its claims lapse).
      const records = await this.records<{ stream_seq: string; delivery_status: string }>(
        `WITH batch AS (
           SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n
           FROM (SELECT id, created_at FROM outbox WHERE stream_seq IS NULL ORDER BY created_at, id LIMIT ${batchLimit(limit)} FOR UPDATE SKIP LOCKED) u
         ), head AS (
           UPDATE outbox_stream_head SET seq = seq + (SELECT COUNT(*) FROM batch) WHERE id = 'outbox' RETURNING seq - (SELECT COUNT(*) FROM batch) AS base
         )
         UPDATE outbox o SET stream_seq = head.base + batch.n FROM batch, head
         WHERE o.id = batch.id
         RETURNING o.stream_seq, o.delivery_status`,
        [],
        m,
      );
      const seqs = records.map((r) => Number(r.stream_seq));
      return { published: seqs.length, head: seqs.length ? Math.max(...seqs) : 0, pending: records.some((r) => r.delivery_status === 'pending') };
    });
  }

  private async publishSqlite(limit: number): Promise<PublishResult> {
    // SQLite here is one connection that every TypeORM transaction shares (savepoints), and a
    // statement run while any transaction is open would see its uncommitted rows. So publication
    // runs only when none is open, synchronously on the driver handle: nothing can start a
    // transaction between the check and the commit.
    const db = (this.ds.driver as unknown as { databaseConnection: SqliteHandle }).databaseConnection;
    if (db.inTransaction) return 'busy';
    return db.transaction(() => {
      // rowid is insertion order on SQLite; ix_outbox_unpublished_order holds unpublished rows only, in rowid order (no sort).
      const rows = db.prepare(PUBLISH_BATCH_SQLITE).all(limit) as { r: number; s: string }[];
      if (rows.length === 0) return { published: 0, head: 0, pending: false };
      const { head } = db.prepare("UPDATE outbox_stream_head SET seq = seq + ? WHERE id = 'outbox' RETURNING seq AS head").get(rows.length) as { head: number };
      const base = head - rows.length;
      const update = db.prepare('UPDATE outbox SET stream_seq = ? WHERE rowid = ?');
      rows.forEach((row, i) => update.run(base + i + 1, row.r));
      return { published: rows.length, head, pending: rows.some((row) => row.s === 'pending') };
    })();
  }

  // --- The stream ------------------------------------------------------------------------

  /** The last position handed out (and committed). */
  async head(): Promise<number> {
    const [row] = await this.ds.query("SELECT seq FROM outbox_stream_head WHERE id = 'outbox'");
    return Number(row?.seq ?? 0);
  }

  /** Where an event the app holds is in the stream: null if unknown; `seq: null` if not yet published. */
  async positionOf(appId: string, id: string): Promise<{ seq: number | null } | null> {
    const row = await this.ds.getRepository(OutboxEntity).findOne({ select: { id: true, streamSeq: true }, where: { appId, id } });
    return row ? { seq: row.streamSeq } : null;
  }

  /** Published events after `after`, every app (ux_outbox_stream_seq): the shared poller's scan. */
  published(after: number, limit: number): Promise<OutboxEntity[]> {
    return this.ds.getRepository(OutboxEntity).createQueryBuilder('o').where('o.stream_seq > :after', { after }).orderBy('o.stream_seq', 'ASC').limit(limit).getMany();
  }

  /** One app's published events in (after, upTo] (ix_outbox_app_stream_seq): a resuming stream catching up. */
  publishedForApp(appId: string, after: number, upTo: number, limit: number): Promise<OutboxEntity[]> {
    return this.ds
      .getRepository(OutboxEntity)
      .createQueryBuilder('o')
      .where('o.app_id = :appId AND o.stream_seq > :after AND o.stream_seq <= :upTo', { appId, after, upTo })
      .orderBy('o.stream_seq', 'ASC')
      .limit(limit)
      .getMany();
  }

  // --- Webhook delivery ------------------------------------------------------------------

  /**
   * Apps with a delivery due now and not claimed, in app-id order after `after` ('' = from the
   * first; see WebhookDispatcher.dueApps): a skip scan of ix_outbox_pending_app (one index probe per app with
   * pending rows, however long its backlog), each checked by one more probe for a due, unclaimed
   * row. Scalar subqueries, so PostgreSQL cannot turn them into a scan of every due row; the probe
   * is ordered as the index is, or PostgreSQL may read it with a scan of the table (or, while it
   * existed, of ix_outbox_due: seen reading 25,000 rows per probe at a backlog of 10,000).
   */
  async appsWithDue(now: number, limit: number, after = ''): Promise<string[]> {
    const [a, n1, n2, l] = this.postgres ? ['$1', '$2', '$2', '$3'] : ['?', '?', '?', '?'];
    // SQLite without ANALYZE statistics picked ix_outbox_due (dropped since) and sorted every pending row per step.
    const index = this.postgres ? '' : 'INDEXED BY ix_outbox_pending_app';
    const sql = `WITH RECURSIVE a(app_id) AS (
         SELECT (SELECT app_id FROM outbox ${index} WHERE delivery_status = 'pending' AND app_id > ${a} ORDER BY app_id LIMIT 1)
         UNION ALL
         SELECT (SELECT o.app_id FROM outbox o ${index} WHERE o.delivery_status = 'pending' AND o.app_id > a.app_id ORDER BY o.app_id LIMIT 1) FROM a WHERE a.app_id IS NOT NULL
       )
       SELECT app_id FROM a
       WHERE app_id IS NOT NULL
         AND (SELECT x.id FROM outbox x ${index} WHERE x.delivery_status = 'pending' AND x.app_id = a.app_id AND x.next_attempt_at <= ${n1} AND (x.claimed_until IS NULL OR x.claimed_until < ${n2}) ORDER BY x.next_attempt_at, x.id LIMIT 1) IS NOT NULL
       LIMIT ${l}`;
    const rows: { app_id: string }[] = this.postgres ? await queryPrepared(this.ds, sql, [after, now, limit]) : await this.ds.query(sql, [after, now, now, limit]);
    return rows.map((r) => r.app_id);
  }

  /**
   * Claims up to `k` due rows of each given app for `by` until `until` (ix_outbox_pending_app),
   * and returns them whole (one statement per claim, no second read). On PostgreSQL, FOR UPDATE
   * SKIP LOCKED so N instances share the work without waiting on each other; SQLite is one
   * instance.
   */
  async claim(wants: { appId: string; k: number }[], now: number, until: number, by: string): Promise<OutboxEntity[]> {
    if (wants.length === 0) return [];
    const set = this.postgres ? 'claimed_until = $1, claimed_by = $2' : 'claimed_until = ?, claimed_by = ?';
    const raw = await this.pendingOfApps(set, [until, by], wants.map((w) => ({ appId: w.appId, k: w.k, dueBy: now })), now);
    return raw.map(fromRaw).sort((x, y) => x.nextAttemptAt! - y.nextAttemptAt! || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  }

  /**
   * Finishes, as `no_endpoint`, up to `k` unclaimed rows of each given app that were due by
   * `dueBy`: the moment its webhook target was read and found unset (so every row it finishes was
   * due before that reading, as when each row was looked up at delivery). One statement for all.
   * Returns how many rows each app had finished.
   */
  async finishWithoutEndpoint(apps: { appId: string; k: number; dueBy: number }[], now: number): Promise<Map<string, number>> {
    const done = new Map<string, number>();
    if (apps.length === 0) return done;
    for (const row of await this.pendingOfApps("delivery_status = 'no_endpoint', claimed_until = NULL, claimed_by = NULL", [], apps, now)) done.set(String(row.app_id), (done.get(String(row.app_id)) ?? 0) + 1);
    return done;
  }

  /**
   * `UPDATE outbox SET <set>` on up to `k` due, unclaimed, pending rows of each app (due by
   * min(`dueBy`, `now`); oldest due first), RETURNING the rows as they are after the update.
   * ix_outbox_pending_app: one index range per app, however long its backlog of later rows.
   */
  private async pendingOfApps(set: string, params: unknown[], apps: { appId: string; k: number; dueBy: number }[], now: number): Promise<Record<string, unknown>[]> {
    if (this.postgres) {
      const n = params.length;
      return this.records(
        `UPDATE outbox SET ${set}
         WHERE id = ANY(ARRAY(
           SELECT c.id FROM unnest($${n + 1}::varchar[], $${n + 2}::int[], $${n + 3}::bigint[]) AS a(app_id, k, due_by)
           CROSS JOIN LATERAL (
             SELECT x.id FROM outbox x
             WHERE x.delivery_status = 'pending' AND x.app_id = a.app_id AND x.next_attempt_at <= a.due_by AND (x.claimed_until IS NULL OR x.claimed_until < $${n + 4})
             ORDER BY x.next_attempt_at, x.id LIMIT a.k
             FOR UPDATE SKIP LOCKED) c))
         RETURNING ${INSERT_COLUMNS}`,
        [...params, apps.map((a) => a.appId), apps.map((a) => a.k), apps.map((a) => Math.min(a.dueBy, now)), now],
      );
    }
    const rows: Record<string, unknown>[] = [];
    for (const { appId, k, dueBy } of apps) {
      rows.push(
        ...(await this.records<Record<string, unknown>>(
          `UPDATE outbox SET ${set}
           WHERE id IN (SELECT id FROM outbox INDEXED BY ix_outbox_pending_app WHERE delivery_status = 'pending' AND app_id = ? AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY next_attempt_at, id LIMIT ?)
           RETURNING ${INSERT_COLUMNS}`,
          [...params, appId, Math.min(dueBy, now), now, k],
        )),
      );
    }
    return rows;
  }

  /**
   * Records the outcomes of deliveries, one statement for many rows, each only if `by` still
   * holds its claim (a manual retry or a lapsed claim taken over since wins), and lets go of them.
   * `nextAttemptAt` null keeps the row's own.
   */
  async finishMany(by: string, outcomes: DeliveryOutcome[]): Promise<void> {
    if (outcomes.length === 0) return;
    if (this.postgres) {
      await queryPrepared(
        this.ds,
        `UPDATE outbox o SET delivery_status = v.status, delivered_at = COALESCE(v.delivered_at, o.delivered_at), attempts = v.attempts, last_error = v.last_error,
           next_attempt_at = COALESCE(v.next_attempt_at, o.next_attempt_at), claimed_by = NULL, claimed_until = NULL
         FROM unnest($1::varchar[], $2::varchar[], $3::bigint[], $4::int[], $5::text[], $6::bigint[]) AS v(id, status, delivered_at, attempts, last_error, next_attempt_at)
         WHERE o.id = v.id AND o.claimed_by = $7`,
        [
          outcomes.map((o) => o.id), outcomes.map((o) => o.status), outcomes.map((o) => o.deliveredAt), outcomes.map((o) => o.attempts),
          outcomes.map((o) => o.lastError), outcomes.map((o) => o.nextAttemptAt), by,
        ],
      );
      return;
    }
    // SQLite: VALUES rows as parameters (6 each, far below its 32766-parameter limit per chunk).
    for (let i = 0; i < outcomes.length; i += FINISH_CHUNK) {
      const chunk = outcomes.slice(i, i + FINISH_CHUNK);
      await this.ds.query(
        `WITH v(id, status, delivered_at, attempts, last_error, next_attempt_at) AS (VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')})
         UPDATE outbox SET delivery_status = v.status, delivered_at = COALESCE(v.delivered_at, outbox.delivered_at), attempts = v.attempts, last_error = v.last_error,
           next_attempt_at = COALESCE(v.next_attempt_at, outbox.next_attempt_at), claimed_by = NULL, claimed_until = NULL
         FROM v WHERE outbox.id = v.id AND outbox.claimed_by = ?`,
        [...chunk.flatMap((o) => [o.id, o.status, o.deliveredAt, o.attempts, o.lastError, o.nextAttemptAt]), by],
      );
    }
  }

  /**
   * Claims up to `limit` due rows of a direct delivery kind (`ping`: CIBA pings; `push`: Web Pushes)
   * for `by` until `until`, through that kind's partial index (ix_outbox_<kind>_due), and returns
   * them whole; SKIP LOCKED on PostgreSQL, so instances share them. `kind` is written into the SQL
   * (a closed union, never input) so each statement matches its partial index.
   */
  async claimDirect(kind: DirectDelivery, now: number, until: number, by: string, limit: number): Promise<OutboxEntity[]> {
    const raw = this.postgres
      ? await this.records<Record<string, unknown>>(
          `UPDATE outbox SET claimed_until = $1, claimed_by = $2
           WHERE id = ANY(ARRAY(SELECT id FROM outbox WHERE delivery_status = '${kind}' AND next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3) ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED))
           RETURNING ${INSERT_COLUMNS}`,
          [until, by, now, limit],
        )
      : await this.records<Record<string, unknown>>(
          `UPDATE outbox SET claimed_until = ?, claimed_by = ?
           WHERE id IN (SELECT id FROM outbox INDEXED BY ix_outbox_${kind}_due WHERE delivery_status = '${kind}' AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY next_attempt_at, id LIMIT ?)
           RETURNING ${INSERT_COLUMNS}`,
          [until, by, now, now, limit],
        );
    return raw.map(fromRaw);
  }

  /** Hands back the rows of a direct delivery kind that `by` claimed and did not finish (shutdown). */
  async releaseDirectClaims(kind: DirectDelivery, by: string): Promise<void> {
    await this.ds.getRepository(OutboxEntity).update({ claimedBy: by, deliveryStatus: kind }, { claimedBy: null, claimedUntil: null });
  }

  /** Hands back what `by` claimed and did not finish (shutdown). */
  async releaseClaims(by: string): Promise<void> {
    await this.ds.getRepository(OutboxEntity).update({ claimedBy: by, deliveryStatus: 'pending' }, { claimedBy: null, claimedUntil: null });
  }

  /** Hands back the given rows if `by` still claims them (queued rows that waited too long to start). */
  async releaseClaimsOf(by: string, ids: string[]): Promise<void> {
    await this.ds.getRepository(OutboxEntity).update({ id: In(ids), claimedBy: by, deliveryStatus: 'pending' }, { claimedBy: null, claimedUntil: null });
  }

  /** Makes a delivery due again now (the app's manual retry). */
  async retry(appId: string, id: string, now: number): Promise<boolean> {
    const res = await this.ds.getRepository(OutboxEntity).update(
      { appId, id, deliveryStatus: In(['failed', 'pending', 'no_endpoint']) },
      { deliveryStatus: 'pending', nextAttemptAt: now, claimedBy: null, claimedUntil: null },
    );
    return (res.affected ?? 0) > 0;
  }

  findForApp(appId: string, id: string): Promise<OutboxEntity | null> {
    return this.ds.getRepository(OutboxEntity).findOneBy({ appId, id });
  }

  /**
   * The app's deliveries, newest first: in (created_at, id) order from ix_outbox_app_created_id
   * (failed ones from ix_outbox_app_failed), after the cursor's row `before` when given (a pair, so
   * a page may end inside a millisecond). The status is written into the text, from LISTED_STATUSES
   * only: SQLite reads a partial index only for a literal.
   */
  async deliveries(appId: string, q: { status?: ListedStatus; before?: { createdAt: number; id: string }; limit: number }): Promise<OutboxEntity[]> {
    const list = this.ds.getRepository(OutboxEntity).createQueryBuilder('o').where('o.appId = :appId', { appId });
    if (q.status) {
      // Only ever one of the constants (never the caller's string), whatever reaches this.
      if (!Object.hasOwn(LISTED_STATUSES, q.status)) throw new RangeError(`not a listed status: ${JSON.stringify(q.status)}`);
      list.andWhere(`o.deliveryStatus = '${LISTED_STATUSES[q.status]}'`);
    }
    if (q.before) list.andWhere('(o.createdAt, o.id) < (:createdAt, :id)', { createdAt: q.before.createdAt, id: q.before.id });
    return list.orderBy('o.createdAt', 'DESC').addOrderBy('o.id', 'DESC').limit(q.limit).getMany();
  }
}
