import { Injectable, Logger } from '@nestjs/common';
import { And, DataSource, In, LessThanOrEqual, MoreThan, type EntityManager } from 'typeorm';
import { queryPrepared } from '../../database/pg-prepared.js';
import { onSqliteConnection, type SqliteSession } from '../../database/sqlite-serial.js';
import { AgentActivityEntity, AuditEventEntity, AuditHeadEntity } from './audit-event.entity.js';
import { chainHash, GENESIS_HASH } from './chain.js';

/**
 * The columns an append writes, with their PostgreSQL array types. Appends and sealing are the
 * audit trail's hot statements (one row per authenticated request): they are written as prepared
 * SQL, not through TypeORM's query builder, which cost more than the rest of a request.
 */
const APPEND_COLUMNS = [
  ['id', 'id', 'varchar'], ['app_id', 'appId', 'varchar'], ['at', 'at', 'bigint'], ['request_id', 'requestId', 'varchar'],
  ['actor_type', 'actorType', 'varchar'], ['actor_id', 'actorId', 'varchar'], ['user_id', 'userId', 'varchar'], ['agent_id', 'agentId', 'varchar'],
  ['model', 'model', 'varchar'], ['task_id', 'taskId', 'varchar'], ['type', 'type', 'varchar'], ['action', 'action', 'varchar'],
  ['resource', 'resource', 'varchar'], ['outcome', 'outcome', 'varchar'], ['status', 'status', 'int'], ['ip', 'ip', 'varchar'], ['details', 'details', 'text'],
] as const satisfies readonly (readonly [string, keyof AuditEventEntity, string])[];

const COLUMN_LIST = APPEND_COLUMNS.map(([c]) => c).join(', ');
const SQLITE_APPEND = `INSERT INTO audit_events (${COLUMN_LIST}) VALUES (${APPEND_COLUMNS.map(() => '?').join(', ')})`;
const SQLITE_APPEND_SEALED = `INSERT INTO audit_events (${COLUMN_LIST}, seq, prev_hash, hash) VALUES (${APPEND_COLUMNS.map(() => '?').join(', ')}, ?, ?, ?)`;
const PG_APPEND_ONE = `INSERT INTO audit_events (${COLUMN_LIST}) VALUES (${APPEND_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`;
/** Many rows in one statement and one round trip: one array parameter per column. */
const PG_APPEND_MANY = `INSERT INTO audit_events (${COLUMN_LIST}) SELECT * FROM unnest(${APPEND_COLUMNS.map(([, , t], i) => `$${i + 1}::${t}[]`).join(', ')})`;
/** The same with each row's place in the chain (null for a row left to the sealer). */
const PG_APPEND_MANY_SEALED = `INSERT INTO audit_events (${COLUMN_LIST}, seq, prev_hash, hash) SELECT * FROM unnest(${[...APPEND_COLUMNS.map(([, , t]) => t), 'bigint', 'varchar', 'varchar'].map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`;
/** Chains unsealed rows: ids, seqs, previous hashes, hashes. */
const PG_SEAL_ROWS = `UPDATE audit_events a SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash
  FROM unnest($1::varchar[], $2::bigint[], $3::varchar[], $4::varchar[]) AS v(id, seq, prev_hash, hash)
  WHERE a.id = v.id AND a.seq IS NULL`;
/** Moves chain heads: app ids, last seqs, last hashes. */
const PG_MOVE_HEADS = `UPDATE audit_heads h SET last_seq = v.last_seq, last_hash = v.last_hash
  FROM unnest($1::varchar[], $2::bigint[], $3::varchar[]) AS v(app_id, last_seq, last_hash)
  WHERE h.app_id = v.app_id`;
/**
 * The unsealed events of the given apps, in app order then chain order, at most `$2` in all (each
 * app's read stops at `$2` too: a range of ix_audit_events_unsealed_chain per app).
 */
const PG_BACKLOG_OF_APPS = `SELECT u.* FROM unnest($1::varchar[]) WITH ORDINALITY AS a(app_id, ord)
  CROSS JOIN LATERAL (SELECT ${COLUMN_LIST} FROM audit_events e WHERE e.app_id = a.app_id AND e.seq IS NULL ORDER BY e.at, e.id LIMIT $2) u
  ORDER BY a.ord, u.at, u.id LIMIT $2`;

/** The stored form of one column of an event (details as JSON text). */
function columnValue(e: Partial<AuditEventEntity>, key: keyof AuditEventEntity): unknown {
  const v = e[key];
  if (key === 'details') return v === null || v === undefined ? null : JSON.stringify(v);
  return v ?? null;
}

const appendValues = (e: Partial<AuditEventEntity>) => APPEND_COLUMNS.map(([, key]) => columnValue(e, key));

/** An unsealed event as read by the sealer (the columns a chain hash covers). */
interface UnsealedRow {
  id: string; app_id: string; at: string | number; request_id: string | null; actor_type: string; actor_id: string | null; user_id: string | null;
  agent_id: string | null; model: string | null; task_id: string | null; type: string; action: string | null; resource: string | null;
  outcome: string; status: number | null; ip: string | null; details: string | null;
}

/** One app's unsealed events in chain order: a range of ix_audit_events_unsealed_chain (named for SQLite's planner). */
const SELECT_UNSEALED = `SELECT ${COLUMN_LIST} FROM audit_events WHERE app_id = $1 AND seq IS NULL ORDER BY at, id LIMIT $2`;
const SELECT_UNSEALED_SQLITE = `SELECT ${COLUMN_LIST} FROM audit_events INDEXED BY ix_audit_events_unsealed_chain WHERE app_id = ? AND seq IS NULL ORDER BY at, id LIMIT ?`;
/** Whether the app has more than `?` unsealed events: a walk of that many index entries, no row read. */
const BACKLOG_BEYOND_SQLITE = 'SELECT 1 AS beyond FROM audit_events INDEXED BY ix_audit_events_unsealed_chain WHERE app_id = ? AND seq IS NULL LIMIT 1 OFFSET ?';

/** Links events, in order, after the chain's head. */
function chainAfter(lastSeq: number, lastHash: string, events: AuditEventEntity[]) {
  const rows: { id: string; seq: number; prevHash: string; hash: string }[] = [];
  for (const e of events) {
    const seq = lastSeq + 1;
    const hash = chainHash(lastHash, e, seq);
    rows.push({ id: e.id, seq, prevHash: lastHash, hash });
    lastSeq = seq;
    lastHash = hash;
  }
  return { rows, lastSeq, lastHash };
}

function eventOf(r: UnsealedRow): AuditEventEntity {
  return Object.assign(new AuditEventEntity(), {
    id: r.id, appId: r.app_id, at: Number(r.at), requestId: r.request_id, actorType: r.actor_type, actorId: r.actor_id, userId: r.user_id,
    agentId: r.agent_id, model: r.model, taskId: r.task_id, type: r.type, action: r.action, resource: r.resource, outcome: r.outcome,
    status: r.status === null ? null : Number(r.status), ip: r.ip, details: r.details === null ? null : JSON.parse(r.details),
  });
}

/**
 * An event exactly as its row will hold it, so that the hash computed before the insert is the
 * one the chain check recomputes from the row: absent fields null, strings well-formed (a lone
 * surrogate would be stored as U+FFFD), details through their JSON text. The row is written from
 * these values too.
 */
function storedEvent(e: Partial<AuditEventEntity>): AuditEventEntity {
  const stored = { ...e } as Record<keyof AuditEventEntity, unknown>;
  for (const [, key] of APPEND_COLUMNS) {
    const v = stored[key];
    if (v === undefined) stored[key] = null;
    else if (typeof v === 'string') stored[key] = v.toWellFormed();
  }
  if (stored.details !== null) stored.details = JSON.parse(JSON.stringify(stored.details).toWellFormed());
  return stored as AuditEventEntity;
}

/** Events by app, each as its row will hold it (storedEvent), in the order given. */
function byApp(events: Partial<AuditEventEntity>[]): Map<string, AuditEventEntity[]> {
  const out = new Map<string, AuditEventEntity[]>();
  for (const e of events) {
    const list = out.get(e.appId!);
    if (list) list.push(storedEvent(e));
    else out.set(e.appId!, [storedEvent(e)]);
  }
  return out;
}

/**
 * When each agent last made a successful request as itself, from request events: (app, agent,
 * latest at) in (app, agent) order, one per agent (the order in which agent_activity rows are
 * locked). A refused request (a worker's call for an ended task, a suspended agent's) is no use.
 */
function agentActivity(events: Iterable<Partial<AuditEventEntity>>): [appId: string, agentId: string, at: number][] {
  const latest = new Map<string, [string, string, number]>();
  for (const e of events) {
    if (e.type !== 'http.request' || e.actorType !== 'agent' || e.outcome !== 'success' || !e.agentId || !e.appId) continue;
    const key = `${e.appId} ${e.agentId}`;
    const seen = latest.get(key);
    if (!seen) latest.set(key, [e.appId, e.agentId, e.at!]);
    else if (e.at! > seen[2]) seen[2] = e.at!;
  }
  return [...latest.values()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
}

/** How far behind an agent's last request its lastUsedAt may be. */
const ACTIVITY_RESOLUTION_MS = 1_000;
/** Agents remembered by activityToMove at most (past it, it starts again from none). */
const ACTIVITY_REMEMBERED = 100_000;

const SQLITE_MOVE_ACTIVITY =
  'INSERT INTO agent_activity (app_id, agent_id, last_at) VALUES (?, ?, ?) ON CONFLICT (app_id, agent_id) DO UPDATE SET last_at = MAX(last_at, excluded.last_at)';
/** The rows in the order given (sorted: two instances' flushes lock shared rows in one order). */
const PG_MOVE_ACTIVITY = `INSERT INTO agent_activity (app_id, agent_id, last_at) SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::bigint[])
  ON CONFLICT (app_id, agent_id) DO UPDATE SET last_at = GREATEST(agent_activity.last_at, excluded.last_at)`;

/** The sealer's chain order, ORDER BY at, id (ids are ASCII: code-unit order is SQLite's byte order). */
const chainOrder = (a: AuditEventEntity, b: AuditEventEntity) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * Unsealed events a request flush seals on SQLite along with its new events, over all its apps:
 * a longer backlog is left to the sealer, so one flush never holds the event loop for long.
 */
const INLINE_BACKLOG = 256;

/**
 * How long a PostgreSQL request flush may wait on a lock at all: only creating a new app's head can
 * wait (on another transaction creating the same one); held heads are skipped, not waited for.
 */
const FLUSH_LOCK_TIMEOUT_MS = 1_000;

/**
 * Unsealed events chained per transaction at most. On SQLite a batch blocks the event loop (the
 * sealer yields between batches): in a 10 s SQLite verify round, batches of 500 held it for 5 to
 * 8 ms 46 times; of 128, 3 times. On PostgreSQL a batch waits on the database, and each costs it a
 * transaction.
 */
const SEAL_BATCH = { postgres: 500, sqlite: 128 } as const;

export interface AuditFilter {
  userId?: string;
  agentId?: string;
  taskId?: string;
  type?: string;
}

@Injectable()
export class AuditRepository {
  private readonly logger = new Logger(AuditRepository.name);
  /** agent_activity as this instance last wrote it ("app agent" → at), for activityToMove. */
  private readonly activityWritten = new Map<string, number>();

  constructor(readonly ds: DataSource) {}

  private get postgres(): boolean {
    return this.ds.options.type === 'postgres';
  }

  /** One event, in the caller's transaction. */
  insert(m: EntityManager, e: Partial<AuditEventEntity>): Promise<unknown> {
    return m.query(this.postgres ? PG_APPEND_ONE : SQLITE_APPEND, appendValues(e));
  }

  /** Events in the caller's transaction: one statement on PostgreSQL, one (cached) statement per row on SQLite. */
  async insertIn(m: EntityManager, rows: Partial<AuditEventEntity>[]): Promise<void> {
    if (this.postgres) {
      if (rows.length) await queryPrepared(m, PG_APPEND_MANY, APPEND_COLUMNS.map(([, key]) => rows.map((e) => columnValue(e, key))));
      return;
    }
    for (const e of rows) await m.query(SQLITE_APPEND, appendValues(e));
  }

  /** SQLite: events in the caller's synchronous transaction (onSqliteConnection), unsealed, for the sealer (as insertIn). */
  insertInSqlite(db: SqliteSession, rows: Partial<AuditEventEntity>[]): void {
    for (const e of rows) db.run(SQLITE_APPEND, ...appendValues(e));
  }

  /** PostgreSQL: an INSERT of one event per row of `relation`, each column's value an SQL expression over it (AuditLog.insertSelectSql). */
  insertSelectSql(relation: string, values: Record<(typeof APPEND_COLUMNS)[number][0], string>): string {
    return `INSERT INTO audit_events (${COLUMN_LIST}) SELECT ${APPEND_COLUMNS.map(([c]) => values[c]).join(', ')} FROM ${relation}`;
  }

  /**
   * Writes request events, in their own transaction, sealed as they are written: each row is
   * inserted once with its place in the chain instead of inserted, read back and updated by the
   * sealer. `take` hands over the events to write when the write starts.
   * SQLite (appendSealedSqlite): one writer, so the head costs no wait. The events are taken once
   * the connection is ours: a state change can then not commit between taking them and sealing
   * them, so every event queued before a state change's event is chained with it, in order.
   * PostgreSQL (appendSealedPostgres): under the apps' chain heads that no other transaction
   * holds (the others' events are written unsealed, for the sealer). No request ever waits on a
   * chain head, nor does the flush.
   * Each agent's last request moves agent_activity along (lastAgentActivity); a failure there loses no event.
   */
  async insertBatch(take: () => Partial<AuditEventEntity>[]): Promise<void> {
    if (this.postgres) {
      const events = byApp(take());
      await this.appendSealedPostgres(events);
      const moved = this.activityToMove(events);
      if (moved.length) {
        await this.ds.query(PG_MOVE_ACTIVITY, [moved.map((a) => a[0]), moved.map((a) => a[1]), moved.map((a) => a[2])]).then(
          () => this.activityMoved(moved),
          (err) => this.logger.warn({ err: String(err), agents: moved.length }, 'agent activity not moved'),
        );
      }
      return;
    }
    const moved = await onSqliteConnection(this.ds, (db) => {
      const events = byApp(take());
      if (events.size === 0) return [];
      return db.transaction(() => {
        let activity = this.activityToMove(events);
        try {
          db.transaction(() => {
            for (const [appId, agentId, at] of activity) db.run(SQLITE_MOVE_ACTIVITY, appId, agentId, at);
          });
        } catch (err) {
          this.logger.warn({ err: String(err), agents: activity.length }, 'agent activity not moved');
          activity = [];
        }
        let budget = INLINE_BACKLOG;
        for (const [appId, fresh] of events) {
          try {
            // Each app under its own savepoint: one app whose backlog cannot be sealed loses no other app's events.
            budget -= db.transaction(() => this.appendSealedSqlite(db, appId, fresh, Math.max(0, budget)));
          } catch {
            // Written unsealed, as on PostgreSQL: the sealer retries the app and logs what stops it.
            for (const e of fresh) db.run(SQLITE_APPEND, ...appendValues(e));
          }
        }
        return activity;
      });
    });
    this.activityMoved(moved);
  }

  /**
   * The agents whose last request the events move by ACTIVITY_RESOLUTION_MS or more past what this
   * instance last wrote for them: under load an agent makes many requests a second, and each flush
   * wrote a row per agent (200 agents: 4 of the 16 µs an audit row cost on SQLite).
   */
  private activityToMove(events: Map<string, AuditEventEntity[]>): [appId: string, agentId: string, at: number][] {
    return agentActivity([...events.values()].flat()).filter(([appId, agentId, at]) => {
      const written = this.activityWritten.get(`${appId} ${agentId}`);
      return written === undefined || at - written >= ACTIVITY_RESOLUTION_MS;
    });
  }

  private activityMoved(moved: [appId: string, agentId: string, at: number][]): void {
    if (this.activityWritten.size + moved.length > ACTIVITY_REMEMBERED) this.activityWritten.clear();
    for (const [appId, agentId, at] of moved) this.activityWritten.set(`${appId} ${agentId}`, at);
  }

  /**
   * Apps with unsealed events, in app id order after `after`: a skip scan of the partial index `ix_audit_events_unsealed_chain`
   * (unsealed rows only), one probe per app, however many events wait.
   */
  async appsWithUnsealed(limit: number, after = ''): Promise<string[]> {
    // SQLite without statistics would walk ux_audit_events_app_seq (every sealed row) instead.
    const index = this.postgres ? '' : 'INDEXED BY ix_audit_events_unsealed_chain';
    const sql = `WITH RECURSIVE a(app_id) AS (
         SELECT (SELECT app_id FROM audit_events ${index} WHERE seq IS NULL AND app_id > ${this.postgres ? '$2' : '?'} ORDER BY app_id LIMIT 1)
         UNION ALL
         SELECT (SELECT e.app_id FROM audit_events e ${index} WHERE e.seq IS NULL AND e.app_id > a.app_id ORDER BY e.app_id LIMIT 1) FROM a WHERE a.app_id IS NOT NULL
       )
       SELECT app_id FROM a WHERE app_id IS NOT NULL LIMIT ${this.postgres ? '$1' : '?'}`;
    const rows: { app_id: string }[] = this.postgres ? await queryPrepared(this.ds, sql, [limit, after]) : await this.ds.query(sql, [after, limit]);
    return rows.map((r) => r.app_id);
  }

  /** SQLite: every write runs on the event loop (the process's one connection, synchronous). */
  get blocksLoop(): boolean {
    return !this.postgres;
  }

  /** Events a seal chains at most: fewer sealed means the app had no more. */
  get sealBatchSize(): number {
    return SEAL_BATCH[this.postgres ? 'postgres' : 'sqlite'];
  }

  /**
   * Chains the app's unsealed events, in (at, id) order, after its head. The head row is locked
   * (FOR UPDATE on PostgreSQL; SQLite has one writer), so instances seal one app one at a time,
   * while appending never waits on this.
   */
  async seal(appId: string, batch = this.sealBatchSize): Promise<number> {
    if (!this.postgres) return onSqliteConnection(this.ds, (db) => db.transaction(() => this.sealSqlite(db, appId, batch)));
    return this.ds.transaction(async (m) => {
      await queryPrepared(m, 'INSERT INTO audit_heads (app_id, last_seq, last_hash) VALUES ($1, 0, $2) ON CONFLICT (app_id) DO NOTHING', [appId, GENESIS_HASH]);
      const [head] = await queryPrepared(m, 'SELECT last_seq, last_hash FROM audit_heads WHERE app_id = $1 FOR UPDATE', [appId]);
      const events = ((await queryPrepared(m, SELECT_UNSEALED, [appId, batch])) as UnsealedRow[]).map(eventOf);
      const chain = chainAfter(Number(head.last_seq), head.last_hash, events);
      if (chain.rows.length === 0) return 0;
      const { rows } = chain;
      await queryPrepared(m, PG_SEAL_ROWS, [rows.map((r) => r.id), rows.map((r) => r.seq), rows.map((r) => r.prevHash), rows.map((r) => r.hash)]);
      await queryPrepared(m, 'UPDATE audit_heads SET last_seq = $1, last_hash = $2 WHERE app_id = $3', [chain.lastSeq, chain.lastHash, appId]);
      return rows.length;
    });
  }

  /**
   * PostgreSQL: `events` (per app) inserted sealed, each app's chained together with its unsealed
   * events in (at, id) order as the sealer would have chained them, in one transaction, under the
   * apps' chain heads. A flush never waits for a head: apps whose head a sealer or another
   * instance's flush holds, apps past the unsealed backlog read (INLINE_BACKLOG rows over all
   * apps), and apps with a row that cannot be hashed get their events written unsealed, for the
   * sealer. If the sealed write fails, all the events are written unsealed in a second
   * statement, and the sealer, which retries and logs each app, finds them.
   */
  private async appendSealedPostgres(events: Map<string, AuditEventEntity[]>): Promise<void> {
    if (events.size === 0) return;
    try {
      await this.ds.transaction(async (m) => {
        const appIds = [...events.keys()].sort();
        await m.query(`SET LOCAL lock_timeout = '${FLUSH_LOCK_TIMEOUT_MS}ms'`);
        // Heads only for apps without one: ON CONFLICT alone would wait for a sealer that has
        // updated an existing head and not yet committed (seen past the lock timeout under load).
        await queryPrepared(
          m,
          'INSERT INTO audit_heads (app_id, last_seq, last_hash) SELECT a, 0, $2 FROM unnest($1::varchar[]) AS a WHERE NOT EXISTS (SELECT 1 FROM audit_heads h WHERE h.app_id = a) ON CONFLICT (app_id) DO NOTHING',
          [appIds, GENESIS_HASH],
        );
        // A head that a sealer or another instance's flush holds is skipped: that app's events are
        // written unsealed, for the sealer. Waiting for it stalled every flush behind a sealer slowed
        // by an overloaded event loop (10-minute soak: flushes past a 2 s lock timeout, unsealed
        // rows up to 4.5 s old).
        const heads: { app_id: string; last_seq: string; last_hash: string }[] = await queryPrepared(
          m,
          'SELECT app_id, last_seq, last_hash FROM audit_heads WHERE app_id = ANY($1::varchar[]) ORDER BY app_id FOR UPDATE SKIP LOCKED',
          [appIds],
        );
        const backlog = new Map<string, AuditEventEntity[]>();
        const read: UnsealedRow[] = heads.length ? await queryPrepared(m, PG_BACKLOG_OF_APPS, [heads.map((h) => h.app_id), INLINE_BACKLOG + 1]) : [];
        for (const r of read) backlog.set(r.app_id, [...(backlog.get(r.app_id) ?? []), eventOf(r)]);
        // Past INLINE_BACKLOG rows the read was cut inside the last app it reached: that app and the
        // apps after it may have more unsealed events than were read, and are left to the sealer.
        const cutAt = read.length > INLINE_BACKLOG ? heads.findIndex((h) => h.app_id === read[read.length - 1].app_id) : heads.length;
        const sealed: { event: AuditEventEntity; seq: number | null; prevHash: string | null; hash: string | null }[] = [];
        const backlogRows: { id: string; seq: number; prevHash: string; hash: string }[] = [];
        const moved: { appId: string; lastSeq: number; lastHash: string }[] = [];
        /** Apps chained here (the others' events are written unsealed). */
        const chained = new Set<string>();
        for (const head of heads.slice(0, cutAt)) {
          const fresh = new Set(events.get(head.app_id));
          const ordered = [...(backlog.get(head.app_id) ?? []), ...fresh].sort(chainOrder);
          let chain: ReturnType<typeof chainAfter>;
          try {
            chain = chainAfter(Number(head.last_seq), head.last_hash, ordered);
          } catch {
            // An unsealed row that cannot be hashed (a damaged row): this app's events wait unsealed
            // for the sealer, which logs it; the other apps' are sealed.
            continue;
          }
          chained.add(head.app_id);
          chain.rows.forEach((r, i) => (fresh.has(ordered[i]) ? sealed.push({ event: ordered[i], ...r }) : backlogRows.push(r)));
          moved.push({ appId: head.app_id, lastSeq: chain.lastSeq, lastHash: chain.lastHash });
        }
        for (const [appId, fresh] of events) if (!chained.has(appId)) for (const event of fresh) sealed.push({ event, seq: null, prevHash: null, hash: null });
        await queryPrepared(m, PG_APPEND_MANY_SEALED, [
          ...APPEND_COLUMNS.map(([, key]) => sealed.map((r) => columnValue(r.event, key))),
          sealed.map((r) => r.seq), sealed.map((r) => r.prevHash), sealed.map((r) => r.hash),
        ]);
        if (backlogRows.length) await queryPrepared(m, PG_SEAL_ROWS, [backlogRows.map((r) => r.id), backlogRows.map((r) => r.seq), backlogRows.map((r) => r.prevHash), backlogRows.map((r) => r.hash)]);
        if (moved.length) await queryPrepared(m, PG_MOVE_HEADS, [moved.map((h) => h.appId), moved.map((h) => h.lastSeq), moved.map((h) => h.lastHash)]);
      });
    } catch (err) {
      this.logger.warn({ err: String(err), apps: events.size }, 'sealed audit append failed; writing the events unsealed for the sealer');
      const rows = [...events.values()].flat();
      await queryPrepared(this.ds, PG_APPEND_MANY, APPEND_COLUMNS.map(([, key]) => rows.map((e) => columnValue(e, key))));
    }
  }

  /** SQLite: one synchronous transaction of prepared statements (the connection is ours for its duration). */
  private sealSqlite(db: SqliteSession, appId: string, batch: number): number {
    const unsealed = db.all<UnsealedRow>(SELECT_UNSEALED_SQLITE, appId, batch).map(eventOf);
    this.chainSqlite(db, appId, unsealed, new Set());
    return unsealed.length;
  }

  /**
   * SQLite, in the caller's transaction: `fresh` events inserted sealed, chained together with the
   * app's unsealed events in (at, id) order, as the sealer would have chained them. When the app
   * has more than `maxBacklog` unsealed events (counted on the index, not read), they are left to
   * the sealer (which yields to the event loop between batches) and `fresh` is written unsealed
   * behind them. Returns the backlog rows it went through: sealed, or counted.
   */
  private appendSealedSqlite(db: SqliteSession, appId: string, fresh: AuditEventEntity[], maxBacklog: number): number {
    if (db.get(BACKLOG_BEYOND_SQLITE, appId, maxBacklog)) {
      for (const e of fresh) db.run(SQLITE_APPEND, ...appendValues(e));
      return maxBacklog;
    }
    const unsealed = db.all<UnsealedRow>(SELECT_UNSEALED_SQLITE, appId, maxBacklog).map(eventOf);
    this.chainSqlite(db, appId, [...unsealed, ...fresh].sort(chainOrder), new Set(fresh));
    return unsealed.length;
  }

  /** Chains `events` after the app's head: those in `fresh` are inserted sealed, the others (unsealed rows) updated. */
  private chainSqlite(db: SqliteSession, appId: string, events: AuditEventEntity[], fresh: ReadonlySet<AuditEventEntity>): void {
    if (events.length === 0) return;
    db.run('INSERT OR IGNORE INTO audit_heads (app_id, last_seq, last_hash) VALUES (?, 0, ?)', appId, GENESIS_HASH);
    const head = db.get<{ last_seq: number; last_hash: string }>('SELECT last_seq, last_hash FROM audit_heads WHERE app_id = ?', appId)!;
    const chain = chainAfter(Number(head.last_seq), head.last_hash, events);
    chain.rows.forEach((r, i) => {
      if (fresh.has(events[i])) db.run(SQLITE_APPEND_SEALED, ...appendValues(events[i]), r.seq, r.prevHash, r.hash);
      else db.run('UPDATE audit_events SET seq = ?, prev_hash = ?, hash = ? WHERE id = ? AND seq IS NULL', r.seq, r.prevHash, r.hash, r.id);
    });
    db.run('UPDATE audit_heads SET last_seq = ?, last_hash = ? WHERE app_id = ?', chain.lastSeq, chain.lastHash, appId);
  }

  head(appId: string): Promise<AuditHeadEntity | null> {
    return this.ds.getRepository(AuditHeadEntity).findOneBy({ appId });
  }

  /** The app's lowest and highest sealed seq, or null when none is sealed (two probes of ux_audit_events_app_seq). */
  async sealedSeqRange(appId: string): Promise<{ min: number; max: number } | null> {
    const row = await this.ds.getRepository(AuditEventEntity).createQueryBuilder('e')
      .select('MIN(e.seq)', 'min').addSelect('MAX(e.seq)', 'max')
      .where('e.app_id = :appId AND e.seq IS NOT NULL', { appId })
      .getRawOne<{ min: number | string | null; max: number | string | null }>();
    return row?.min === null || row?.min === undefined ? null : { min: Number(row.min), max: Number(row.max) };
  }

  /** Sealed events in seq order after `afterSeq` (and up to `upToSeq`, when given). */
  page(appId: string, afterSeq: number, limit: number, filter: AuditFilter = {}, upToSeq?: number): Promise<AuditEventEntity[]> {
    const where = Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined));
    const seq = upToSeq === undefined ? MoreThan(afterSeq) : And(MoreThan(afterSeq), LessThanOrEqual(upToSeq));
    return this.ds.getRepository(AuditEventEntity).find({ where: { appId, seq, ...where }, order: { seq: 'ASC' }, take: limit });
  }

  /** A user's sealed events, newest first, before `beforeSeq` (null: from the newest); request events left out. */
  userPageDesc(appId: string, userId: string, beforeSeq: number | null, limit: number): Promise<AuditEventEntity[]> {
    const qb = this.ds.getRepository(AuditEventEntity).createQueryBuilder('e')
      .where("e.app_id = :appId AND e.user_id = :userId AND e.seq IS NOT NULL AND e.type <> 'http.request'", { appId, userId });
    if (beforeSeq !== null) qb.andWhere('e.seq < :beforeSeq', { beforeSeq });
    return qb.orderBy('e.seq', 'DESC').take(limit).getMany();
  }

  /** When each agent last made a successful request (as far as its request events are written, to the second). */
  async lastAgentActivity(appId: string, agentIds: string[]): Promise<Map<string, number>> {
    if (agentIds.length === 0) return new Map();
    const rows = await this.ds.getRepository(AgentActivityEntity).findBy({ appId, agentId: In(agentIds) });
    return new Map(rows.map((r) => [r.agentId, r.lastAt]));
  }

  async allAppIds(): Promise<string[]> {
    const rows: { app_id: string }[] = await this.ds.createQueryBuilder().select('h.app_id', 'app_id').from(AuditHeadEntity, 'h').getRawMany();
    return rows.map((r) => r.app_id);
  }
}
