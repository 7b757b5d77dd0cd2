import { Injectable } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { DataSource, In, LessThan, type EntityManager, type QueryDeepPartialEntity } from 'typeorm';
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

export type PublishResult = { published: number; head: number } | 'busy';

/**
 * Every query of the outbox: writes by the modules that cause events, publication (the stream
 * order), the stream's pages, and the webhook dispatcher's claims. The index each query relies on
 * is named beside it (migrations 1764360000000, 1764380000000 and 1764450000000).
 */
@Injectable()
export class OutboxRepository {
  constructor(private readonly ds: DataSource) {}

  private get postgres(): boolean {
    return this.ds.options.type === 'postgres';
  }

  /**
   * Calls `fn` after the commit of every transaction in which `added` was called (at once for a
   * write outside a transaction): the publisher wakes when events become visible, not before.
   * On SQLite the one connection's savepoints commit too; only the outermost commit counts.
   */
  onAddedCommitted(fn: () => void): void {
    // Called from inside the committing transaction's async context: run `fn` in the context of
    // this registration instead, so work it starts is not taken for part of that transaction.
    const root = new AsyncResource('OutboxAddedCommitted');
    const notify = () => root.runInAsyncScope(fn);
    this.ds.subscribers.push({
      afterTransactionCommit: ({ queryRunner }) => {
        if (!queryRunner.data?.[ADDED] || queryRunner.isTransactionActive) return;
        delete queryRunner.data[ADDED];
        notify();
      },
      afterTransactionRollback: ({ queryRunner }) => {
        if (!queryRunner.isTransactionActive) delete queryRunner.data?.[ADDED];
      },
    });
    this.committed = notify;
  }

  private committed: (() => void) | null = null;

  private added(m: EntityManager): void {
    const runner = m.queryRunner;
    if (runner?.isTransactionActive) runner.data[ADDED] = true;
    else this.committed?.();
  }

  /** Rows of a statement (UPDATE ... RETURNING included), on `m`'s transaction or a pooled connection. */
  private async records<T>(sql: string, params: unknown[], m?: EntityManager): Promise<T[]> {
    const runner = m?.queryRunner ?? this.ds.createQueryRunner();
    try {
      return (await runner.query(sql, params, true)).records as T[];
    } finally {
      if (!m?.queryRunner) await runner.release();
    }
  }

  async insert(m: EntityManager, row: OutboxEntity): Promise<void> {
    await m.insert(OutboxEntity, row as QueryDeepPartialEntity<OutboxEntity>);
    this.added(m);
  }

  // --- Publication: the stream order -------------------------------------------------------

  /**
   * Gives committed, unpublished rows the next stream positions (counted in outbox_stream_head,
   * which retention does not touch, so a position is never handed out twice). Exactly one
   * publisher runs at a time per database, and its positions become visible in one commit, after
   * every earlier publisher's commit: so a reader that has seen position n has seen every position
   * below n, and a row whose transaction commits late simply gets a later position. Returns 'busy' when
   * another publisher holds the turn (PostgreSQL) or a transaction is open on the connection
   * (SQLite), so the caller tries again shortly.
   */
  async publish(limit: number): Promise<PublishResult> {
    return this.postgres ? this.publishPostgres(limit) : this.publishSqlite(limit);
  }

  private async publishPostgres(limit: number): Promise<PublishResult> {
    // Cheap when there is nothing to do (the fallback tick): ix_outbox_unpublished is partial.
    const any: unknown[] = await this.ds.query('SELECT 1 FROM outbox WHERE stream_seq IS NULL LIMIT 1');
    if (any.length === 0) return { published: 0, head: 0 };
    return this.ds.transaction(async (m): Promise<PublishResult> => {
      const [{ locked }] = await m.query('SELECT pg_try_advisory_xact_lock($1) AS locked', [PUBLISH_LOCK]);
      if (!locked) return 'busy';
      // A statement after the lock sees every earlier publisher's commit (READ COMMITTED takes a
      // snapshot per statement), so the head row is current. Rows of transactions still open are
      // invisible here and wait for a later pass. Within one pass, (created_at, id).
      const records = await this.records<{ stream_seq: string }>(
        `WITH batch AS (
           SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n
           FROM (SELECT id, created_at FROM outbox WHERE stream_seq IS NULL ORDER BY created_at, id LIMIT $1) u
         ), head AS (
           UPDATE outbox_stream_head SET seq = seq + (SELECT COUNT(*) FROM batch) WHERE id = 'outbox' RETURNING seq - (SELECT COUNT(*) FROM batch) AS base
         )
         UPDATE outbox o SET stream_seq = head.base + batch.n FROM batch, head
         WHERE o.id = batch.id
         RETURNING o.stream_seq`,
        [limit],
        m,
      );
      const seqs = records.map((r) => Number(r.stream_seq));
      return { published: seqs.length, head: seqs.length ? Math.max(...seqs) : 0 };
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
      // rowid is insertion order on SQLite; ix_outbox_unpublished keeps this to unpublished rows.
      const rows = db.prepare('SELECT rowid AS r FROM outbox INDEXED BY ix_outbox_unpublished WHERE stream_seq IS NULL ORDER BY rowid LIMIT ?').all(limit) as { r: number }[];
      if (rows.length === 0) return { published: 0, head: 0 };
      const { head } = db.prepare("UPDATE outbox_stream_head SET seq = seq + ? WHERE id = 'outbox' RETURNING seq AS head").get(rows.length) as { head: number };
      const base = head - rows.length;
      const update = db.prepare('UPDATE outbox SET stream_seq = ? WHERE rowid = ?');
      rows.forEach((row, i) => update.run(base + i + 1, row.r));
      return { published: rows.length, head };
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
   * Apps with a delivery due now and not claimed: a skip scan of ix_outbox_pending_app (one index
   * probe per app with pending rows, however long its backlog), each checked by one more probe
   * for a due, unclaimed row. Scalar subqueries, so PostgreSQL cannot turn them into a scan of
   * every due row.
   */
  async appsWithDue(now: number, limit: number): Promise<string[]> {
    const [n1, n2, l] = this.postgres ? ['$1', '$1', '$2'] : ['?', '?', '?'];
    // SQLite without ANALYZE statistics would pick ix_outbox_due and sort every pending row per step.
    const index = this.postgres ? '' : 'INDEXED BY ix_outbox_pending_app';
    const rows: { app_id: string }[] = await this.ds.query(
      `WITH RECURSIVE a(app_id) AS (
         SELECT (SELECT app_id FROM outbox ${index} WHERE delivery_status = 'pending' ORDER BY app_id LIMIT 1)
         UNION ALL
         SELECT (SELECT o.app_id FROM outbox o ${index} WHERE o.delivery_status = 'pending' AND o.app_id > a.app_id ORDER BY o.app_id LIMIT 1) FROM a WHERE a.app_id IS NOT NULL
       )
       SELECT app_id FROM a
       WHERE app_id IS NOT NULL
         AND (SELECT x.id FROM outbox x ${index} WHERE x.delivery_status = 'pending' AND x.app_id = a.app_id AND x.next_attempt_at <= ${n1} AND (x.claimed_until IS NULL OR x.claimed_until < ${n2}) LIMIT 1) IS NOT NULL
       LIMIT ${l}`,
      this.postgres ? [now, limit] : [now, now, limit],
    );
    return rows.map((r) => r.app_id);
  }

  /**
   * Claims up to `k` due rows of each given app for `by` until `until` (ix_outbox_pending_app).
   * On PostgreSQL, FOR UPDATE SKIP LOCKED so N instances share the work without waiting on each
   * other; SQLite is one instance.
   */
  async claim(wants: { appId: string; k: number }[], now: number, until: number, by: string): Promise<OutboxEntity[]> {
    if (wants.length === 0) return [];
    let ids: string[];
    if (this.postgres) {
      const records = await this.records<{ id: string }>(
        `UPDATE outbox SET claimed_until = $1, claimed_by = $2
         WHERE id = ANY(ARRAY(
           SELECT c.id FROM unnest($3::varchar[], $4::int[]) AS a(app_id, k)
           CROSS JOIN LATERAL (
             SELECT x.id FROM outbox x
             WHERE x.delivery_status = 'pending' AND x.app_id = a.app_id AND x.next_attempt_at <= $5 AND (x.claimed_until IS NULL OR x.claimed_until < $5)
             ORDER BY x.next_attempt_at, x.id LIMIT a.k
             FOR UPDATE SKIP LOCKED) c))
         RETURNING id`,
        [until, by, wants.map((w) => w.appId), wants.map((w) => w.k), now],
      );
      ids = records.map((r) => r.id);
    } else {
      ids = [];
      for (const { appId, k } of wants) {
        const records = await this.records<{ id: string }>(
          `UPDATE outbox SET claimed_until = ?, claimed_by = ?
           WHERE id IN (SELECT id FROM outbox INDEXED BY ix_outbox_pending_app WHERE delivery_status = 'pending' AND app_id = ? AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY next_attempt_at, id LIMIT ?)
           RETURNING id`,
          [until, by, appId, now, now, k],
        );
        ids.push(...records.map((r) => r.id));
      }
    }
    if (ids.length === 0) return [];
    return this.ds.getRepository(OutboxEntity).find({ where: { id: In(ids), claimedBy: by }, order: { nextAttemptAt: 'ASC', id: 'ASC' } });
  }

  /** Records the outcome of a delivery this claimer still holds, and lets go of the row. */
  async finish(id: string, by: string, patch: Partial<Omit<OutboxEntity, 'payload'>>): Promise<void> {
    await this.ds.getRepository(OutboxEntity).update({ id, claimedBy: by }, { ...patch, claimedBy: null, claimedUntil: null });
  }

  /** Hands back what `by` claimed and did not finish (shutdown). */
  async releaseClaims(by: string): Promise<void> {
    await this.ds.getRepository(OutboxEntity).update({ claimedBy: by, deliveryStatus: 'pending' }, { claimedBy: null, claimedUntil: null });
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

  /** The app's deliveries, newest first (ix_outbox_app_created). */
  deliveries(appId: string, q: { status?: OutboxEntity['deliveryStatus']; beforeCreatedAt?: number; limit: number }): Promise<OutboxEntity[]> {
    return this.ds.getRepository(OutboxEntity).find({
      where: { appId, ...(q.status ? { deliveryStatus: q.status } : {}), ...(q.beforeCreatedAt !== undefined ? { createdAt: LessThan(q.beforeCreatedAt) } : {}) },
      order: { createdAt: 'DESC', id: 'DESC' },
      take: q.limit,
    });
  }
}
