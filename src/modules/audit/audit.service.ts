import { Injectable, Logger, Optional, type BeforeApplicationShutdown, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { AsyncResource } from 'node:async_hooks';
import type { EntityManager } from 'typeorm';
import { AUDIT_CARRIED, AuditLog, type AuditInput, type AuditSelect } from '../../common/audit-log.js';
import { sqlLiteral } from '../../database/pg-params.js';
import type { SqliteSession } from '../../database/sqlite-serial.js';
import { Clock } from '../../common/clock.js';
import { AppError } from '../../common/errors/app-error.js';
import { newEventId } from '../../common/ids.js';
import { RequestContext, type RequestFields } from '../../common/request-context.js';
import { AuditEventEntity } from './audit-event.entity.js';
import { AuditRepository, type AuditFilter } from './audit.repository.js';
import { ChainWalker, type ChainCheck } from './chain.js';
import type { AuditEventDto, AuditPageDto, AuditQuery } from './dto/audit.dto.js';

export type { AuditInput };

/** Strips control and bidi characters and caps length: agent-written text is stored bounded and safe. */
export function safeText(value: string | null | undefined, max: number): string | null {
  if (value === null || value === undefined) return null;
  const cut = value.replace(/[\u0000-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/g, ' ').slice(0, max);
  // Whole characters only: a cut through a surrogate pair drops its first half, and any other lone
  // surrogate becomes U+FFFD (it is not UTF-8: SQLite would store invalid bytes, PostgreSQL another value).
  return (/[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut).replace(LONE_SURROGATE, '\uFFFD');
}

/**
 * safeText in PostgreSQL, for events a statement writes (insertSelectSql): the same characters
 * become spaces, and the text is cut as safeText cuts it, to the longest run of whole characters
 * of at most `max` UTF-16 units (a character beyond the BMP counts two). A text of at most `max`
 * bytes is within that already (a unit is at least one UTF-8 byte): only longer ones are split
 * into characters and counted. A PostgreSQL text holds no lone surrogate (safeText's last step).
 */
function safeTextSql(expr: string, max: number): string {
  const clean = `regexp_replace(${expr}, '[\\u0001-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]', ' ', 'g')`;
  const cut =
    `(SELECT string_agg(c.ch, '' ORDER BY c.i) FROM (SELECT ch, i, sum(CASE WHEN ascii(ch) > 65535 THEN 2 ELSE 1 END) OVER (ORDER BY i) AS units ` +
    `FROM regexp_split_to_table(${clean}, '') WITH ORDINALITY AS t(ch, i)) c WHERE c.units <= ${max})`;
  return `CASE WHEN octet_length(${expr}) <= ${max} THEN ${clean} ELSE ${cut} END`;
}

/** The most characters an event keeps of each free text (safeText). */
const TEXT_MAX = { model: 200, taskId: 128, action: 64, resource: 512 } as const;
/** audit_events.ip's width: a longer value (only a context ip can be one) would fail the whole batch it is written in. */
const IP_MAX = 64;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const SEAL_EVERY_MS = 1_000;
const SEAL_APPS_PER_PASS = 100;
/**
 * How often queued request events are written. On SQLite a flush is synchronous (the connection is
 * the process's), and every request in flight waits it out: in a 10 s SQLite verify round (about
 * 3,000 verifications/s), flushes every 100 ms, each chaining its events with the unsealed backlog,
 * held the event loop over 5 ms 19 times (over 10 ms 5 times); every 25 ms, 7 times (once).
 * On PostgreSQL the flush waits on the database, not on the loop, and each is a transaction that
 * costs the database: fewer are better.
 */
const REQUEST_FLUSH_MS = { postgres: 100, sqlite: 25 } as const;
/** Request events written per statement at most. */
const REQUEST_BATCH = 500;
/** Rows read per page when a chain is checked. */
const VERIFY_PAGE = 1000;

/** What the request queue needs of the HTTP server (Fastify): to be told once it has closed. */
interface ClosingServer {
  addHook(name: 'onClose', hook: () => Promise<void>): unknown;
}

/**
 * The audit trail. Appending is a plain insert (in the state change's own transaction, or alone
 * for a request); a background sealer chains each app's new events in order, so no request
 * waits on a global lock. Queries and verification seal first, so they see everything.
 */
@Injectable()
export class AuditService implements AuditLog, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(AuditService.name);
  private timer: NodeJS.Timeout | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private readonly pending: Partial<AuditEventEntity>[] = [];
  /** The request events' write in progress. */
  private flushing: Promise<void> | null = null;
  /** Request events queued, taken by a batch, and written by it (or lost and logged), since start: a flush waits for those queued before it. */
  private queued = 0;
  private taken = 0;
  private written = 0;
  /** The batch of the write in progress (or the last one). */
  private batch: Promise<number> | null = null;
  private sealing: Promise<void> | null = null;
  /** The last app of the previous sealing pass, when it was full: the next pass starts after it. */
  private sealAfter = '';
  private stopping = false;
  private readonly scope = new AsyncResource('AuditRequestFlush');

  constructor(
    private readonly repo: AuditRepository,
    private readonly clock: Clock,
    @Optional() private readonly http?: HttpAdapterHost,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.sealAll().catch((err) => this.logger.warn({ err }, 'audit sealing failed')), SEAL_EVERY_MS);
    this.timer.unref();
    this.flushTimer = setInterval(() => this.writeDue(), REQUEST_FLUSH_MS[this.repo.blocksLoop ? 'sqlite' : 'postgres']);
    this.flushTimer.unref();
    // A graceful stop (Nest's close) runs: beforeApplicationShutdown → dispose(): the HTTP server
    // closes, and requests still in flight complete (long-polls and streams that shutdown answers)
    // → onApplicationShutdown, where TypeOrmCoreModule destroys the DataSource before ours runs
    // (both modules are global; Nest runs their hooks in reverse registration order). So the
    // queue is written once more inside dispose(): Fastify runs `onClose` hooks after the server
    // has closed and every in-flight request has completed, while the database is still open.
    this.http?.httpAdapter?.getInstance<ClosingServer>().addHook('onClose', () => this.drainRequests());
  }

  /** Stops background sealing (the next start seals what is left) and writes the request events queued so far. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    await this.sealing?.catch(() => undefined);
    await this.flushRequests();
  }

  /** Last resort (no HTTP server): the queue is normally empty here, the database already closed. */
  async onApplicationShutdown(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flushRequests();
  }

  /** Appends an event inside the caller's transaction; the request's context fills in the actor. */
  async record(m: EntityManager, input: AuditInput): Promise<void> {
    await this.repo.insert(m, this.build(input, RequestContext.get()));
  }

  /** Appends events of one batch inside the caller's transaction, each with its own request's context. */
  async recordMany(m: EntityManager, events: { input: AuditInput; context: RequestFields }[]): Promise<void> {
    await this.repo.insertIn(m, events.map((e) => this.build(e.input, e.context)));
  }

  recordManySqlite(db: SqliteSession, events: { input: AuditInput; context: RequestFields }[]): void {
    this.repo.insertInSqlite(db, events.map((e) => this.build(e.input, e.context)));
  }

  insertSelectSql(relation: string, e: AuditSelect): string {
    const carried = (c: (typeof AUDIT_CARRIED)[number]) => `${relation}.${c}`;
    return this.repo.insertSelectSql(relation, {
      id: carried('audit_id'), app_id: e.appId, at: e.at, request_id: carried('audit_request_id'), actor_type: carried('audit_actor_type'),
      actor_id: carried('audit_actor_id'), user_id: `COALESCE(${e.userId}, ${carried('audit_user_id')})`, agent_id: `COALESCE(${e.agentId}, ${carried('audit_agent_id')})`,
      model: safeTextSql(`COALESCE(${e.model}, ${carried('audit_model')})`, TEXT_MAX.model), task_id: safeTextSql(`COALESCE(${e.taskId}, ${carried('audit_task_id')})`, TEXT_MAX.taskId),
      type: sqlLiteral(e.type), action: safeTextSql(e.action, TEXT_MAX.action), resource: safeTextSql(e.resource, TEXT_MAX.resource), outcome: sqlLiteral(e.outcome),
      status: String(Math.trunc(e.status)), ip: carried('audit_ip'), details: 'NULL',
    });
  }

  /** The AUDIT_CARRIED values of one event of insertSelectSql, whose `at` is the statement's time `at`. */
  carried(ctx: RequestFields, at: number): (string | null)[] {
    // Cleaned here as build() cleans them (a NUL byte would fail the whole statement); insertSelectSql's cut is then a no-op on them.
    return [
      newEventId(at), ctx.requestId ?? null, ctx.actorType ?? 'system', ctx.actorId ?? null, ctx.ip?.slice(0, IP_MAX) ?? null, ctx.userId ?? null, ctx.agentId ?? null,
      safeText(ctx.model, TEXT_MAX.model), safeText(ctx.taskId, TEXT_MAX.taskId),
    ];
  }

  /**
   * Queues the event of one authenticated request (after the response; never fails or slows the
   * request). Queued events are written together every REQUEST_FLUSH_MS (and at shutdown): one
   * multi-row insert instead of one insert per request on the hot path.
   */
  recordRequest(ctx: RequestFields, route: string, method: string, status: number): void {
    if (!ctx.appId) return;
    this.pending.push(this.build({ appId: ctx.appId, type: 'http.request', outcome: status < 400 ? 'success' : 'failure', action: `${method} ${route}`.slice(0, 64), status }, ctx));
    this.queued++;
    if (this.pending.length >= REQUEST_BATCH) this.writeDue();
  }

  /**
   * The timer's write: the events queued when it starts (more batches only while a full one is
   * waiting), then nothing until the next tick. Under load a write that went on until the queue
   * was empty ran back to back, each a transaction of nine statements for a few dozen events
   * (35 writes a second at 1,800 verifications/s); one write per tick takes them together.
   */
  writeDue(): void {
    if (this.flushing || this.pending.length === 0) return;
    // The shared write runs in the service's own async context, not in that of the request that
    // happened to start it: its log lines (a failed batch of other requests' and apps' events)
    // must not carry that request's id and app.
    const write: Promise<void> = this.scope.runInAsyncScope(() => this.writeQueued()).finally(() => {
      if (this.flushing === write) this.flushing = null;
    });
    this.flushing = write;
  }

  /**
   * Writes the request events queued before the call: waits for the batches that take them, and
   * starts a write if none is in progress. Events queued after the call are not waited for, nor
   * the later batches of a write in progress: under steady load the queue is never empty, and a
   * flush that waited for it to be (sealing, an audit read, shutdown) would not return while the
   * load lasted.
   */
  async flushRequests(): Promise<void> {
    const target = this.queued;
    while (this.written < target) {
      this.writeDue();
      // The batch in progress (a write in progress always has one): when it ends, its events are written.
      // A batch that failed before taking anything would fail again: the next flush retries.
      if ((await this.batch!) === 0) return;
    }
  }

  /** One batch, and more while a full one waits. */
  private async writeQueued(): Promise<void> {
    do this.batch = this.writeBatch();
    while ((await this.batch) > 0 && this.pending.length >= REQUEST_BATCH);
  }

  /** Writes up to REQUEST_BATCH queued events; resolves to how many it took, once they are written (or lost and logged). */
  private async writeBatch(): Promise<number> {
    // Taken by the repository when its write starts (see insertBatch).
    let taken = 0;
    const take = () => {
      const batch = this.pending.splice(0, REQUEST_BATCH);
      taken = batch.length;
      this.taken += taken;
      return batch;
    };
    await this.repo.insertBatch(take).catch((err) => this.logger.warn({ err: String(err), lost: taken, queued: this.pending.length }, 'audit append failed'));
    this.written += taken;
    return taken;
  }

  /** The HTTP server has closed: no request event can be queued any more; write what is left. */
  private async drainRequests(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flushRequests();
  }

  private build(input: AuditInput, ctx: RequestFields): Partial<AuditEventEntity> {
    // One reading for both: events are sealed in (at, id) order.
    const at = this.clock.now();
    return {
      id: newEventId(at),
      appId: input.appId,
      at,
      requestId: ctx.requestId ?? null,
      actorType: ctx.actorType ?? 'system',
      actorId: ctx.actorId ?? null,
      userId: input.userId ?? ctx.userId ?? null,
      agentId: input.agentId ?? ctx.agentId ?? null,
      model: safeText(input.model ?? ctx.model, TEXT_MAX.model),
      taskId: safeText(input.taskId ?? ctx.taskId, TEXT_MAX.taskId),
      type: input.type,
      action: safeText(input.action, TEXT_MAX.action),
      resource: safeText(input.resource, TEXT_MAX.resource),
      outcome: input.outcome,
      status: input.status ?? null,
      ip: ctx.ip?.slice(0, IP_MAX) ?? null,
      details: input.details ?? null,
      seq: null,
      prevHash: null,
      hash: null,
    };
  }

  /** Seals every app with new events (one pass at a time per instance). */
  sealAll(): Promise<void> {
    this.sealing ??= (async () => {
      try {
        await this.flushRequests();
        // A pass in progress at shutdown ends after its current batch. An app whose events cannot
        // be sealed (a damaged row) is logged and passed over: it holds up no other app's chain.
        // Apps in id order, from after the last app of the previous pass: apps that cannot be
        // sealed (more than a pass holds) do not keep the others waiting.
        const apps = await this.repo.appsWithUnsealed(SEAL_APPS_PER_PASS, this.sealAfter);
        this.sealAfter = apps.length === SEAL_APPS_PER_PASS ? apps[apps.length - 1] : '';
        for (const appId of apps) {
          try {
            while (!this.stopping && (await this.sealBatch(appId)) >= this.repo.sealBatchSize);
          } catch (err) {
            this.logger.warn({ err: String(err), appId }, 'audit sealing failed for this app; its later events wait');
          }
        }
      } finally {
        this.sealing = null;
      }
    })();
    return this.sealing;
  }

  /**
   * Seals the app's events written so far. A batch that is not full has sealed every row committed
   * before it began; looping until a batch found none chased the rows written meanwhile, and under
   * steady load ran back to back (a transaction of seven statements for a few rows each time).
   */
  async seal(appId: string): Promise<void> {
    await this.flushRequests();
    while ((await this.sealBatch(appId)) >= this.repo.sealBatchSize);
  }

  /**
   * Seals the app's events before they are read. A chain that cannot be sealed (a damaged or
   * tampered row, or a row where the next seq should go) is logged and read as it stands: the
   * check then reports it, and the lists show what is sealed, instead of failing with a 500.
   */
  private async sealBeforeReading(appId: string): Promise<void> {
    try {
      await this.seal(appId);
    } catch (err) {
      this.logger.warn({ err: String(err), appId }, 'audit sealing failed for this app; its later events wait');
    }
  }

  /**
   * One batch, then the rest of the event loop's turn: on SQLite a batch is synchronous and its
   * promise settles in a microtask, so back-to-back batches would hold the loop for the whole
   * backlog (seconds of requests' audit rows at once), stalling every request behind them.
   */
  private async sealBatch(appId: string): Promise<number> {
    const sealed = await this.repo.seal(appId);
    await new Promise((resolve) => setImmediate(resolve));
    return sealed;
  }

  async list(appId: string, q: AuditQuery): Promise<AuditPageDto> {
    const after = q.after === undefined ? 0 : Number(q.after);
    if (!Number.isSafeInteger(after) || after < 0) throw new AppError('validation_failed', 'after must be a cursor returned as nextCursor');
    await this.sealBeforeReading(appId);
    const limit = q.limit ?? 50;
    const filter: AuditFilter = { userId: q.userId, agentId: q.agentId, taskId: q.taskId, type: q.type };
    const rows = await this.repo.page(appId, after, limit + 1, filter);
    const events = rows.slice(0, limit).map((e) => this.toDto(e));
    return { events, nextCursor: rows.length > limit ? String(events[events.length - 1].seq) : null };
  }

  /**
   * A user's audit events for their dashboard, newest first (request events left out): `after` is
   * the `nextCursor` of the previous page.
   */
  async listForUser(appId: string, userId: string, q: { after?: string; limit?: number }): Promise<AuditPageDto> {
    const before = q.after === undefined ? null : Number(q.after);
    if (before !== null && (!Number.isSafeInteger(before) || before < 1)) throw new AppError('validation_failed', 'after must be a cursor returned as nextCursor');
    await this.sealBeforeReading(appId);
    const limit = q.limit ?? 50;
    const rows = await this.repo.userPageDesc(appId, userId, before, limit + 1);
    const events = rows.slice(0, limit).map((e) => this.toDto(e));
    return { events, nextCursor: rows.length > limit ? String(events[events.length - 1].seq) : null };
  }

  /** When each agent was last active (its own requests), from the audit trail. */
  lastAgentActivity(appId: string, agentIds: string[]): Promise<Map<string, number>> {
    return this.repo.lastAgentActivity(appId, agentIds);
  }

  /**
   * Checks the app's chain up to the head as read first. Rows and head move in one transaction, so
   * every row up to it is there; rows sealed during the walk (flushes and sealers go on) are left
   * for the next check, instead of making the walk outrun the head and read as a forged tail. A
   * sealed row past the head as read afterwards cannot have been sealed with it, nor one below
   * seq 1, nor any sealed row of an app without a head: all are reported.
   */
  async verify(appId: string): Promise<ChainCheck> {
    await this.sealBeforeReading(appId);
    const head = await this.repo.head(appId);
    const upTo = head?.lastSeq ?? 0;
    const walker = new ChainWalker();
    for (let after = 0; upTo > 0; ) {
      const page = await this.repo.page(appId, after, VERIFY_PAGE, {}, upTo);
      for (const e of page) walker.add(e);
      if (page.length < VERIFY_PAGE) break;
      after = page[page.length - 1].seq!;
    }
    const check = walker.finish(head);
    if (!check.valid) return check;
    // Rows the walk cannot see: below seq 1 (never sealed so), or past the head. Rows commit with
    // their head, so a row past the head as read after it was not sealed with it.
    const range = await this.repo.sealedSeqRange(appId);
    if (range && range.min < 1) return { ...check, valid: false, firstBadSeq: 1 };
    if (!range || range.max <= upTo) return check;
    const now = await this.repo.head(appId);
    return now && range.max <= now.lastSeq ? check : { ...check, valid: false, firstBadSeq: (now?.lastSeq ?? upTo) + 1 };
  }

  /** Every app's chain (the CLI's `audit-verify`). */
  async verifyAll(): Promise<{ appId: string; check: ChainCheck }[]> {
    await this.sealAll();
    const out = [];
    for (const appId of await this.repo.allAppIds()) out.push({ appId, check: await this.verify(appId) });
    return out;
  }

  private toDto(e: AuditEventEntity): AuditEventDto {
    return {
      id: e.id, seq: e.seq!, at: new Date(e.at).toISOString(), requestId: e.requestId, actorType: e.actorType, actorId: e.actorId,
      userId: e.userId, agentId: e.agentId, model: e.model, taskId: e.taskId, type: e.type, action: e.action, resource: e.resource,
      outcome: e.outcome, status: e.status, ip: e.ip, ...(e.details ? { details: e.details } : {}), prevHash: e.prevHash!, hash: e.hash!,
    };
  }
}
