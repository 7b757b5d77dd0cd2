import { Injectable } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { AUDIT_CARRIED, AuditLog } from '../../common/audit-log.js';
import { Clock } from '../../common/clock.js';
import { RequestContext, type RequestFields } from '../../common/request-context.js';
import { PgParams } from '../../database/pg-params.js';
import { queryPrepared } from '../../database/pg-prepared.js';
import { onSqliteConnection } from '../../database/sqlite-serial.js';
import { OUTBOX_CARRIED, OutboxService } from '../events/outbox.service.js';
import { eventData, eventDataSql } from '../step-ups/step-up-decisions.js';
import { isTokenJti } from '../step-ups/mfa-proxy-token.js';
import { consumedOf, StepUpsRepository, type ConsumedRow, type ConsumedStepUp, type TokenToConsume } from '../step-ups/step-ups.repository.js';

/** Tokens consumed in one transaction at most. */
const MAX_BATCH = 256;
/**
 * Batches in flight at once: while one waits on its commit, the next is written (PostgreSQL; on
 * SQLite's one connection they queue). Tokens shared by concurrent batches are locked in jti order.
 */
const MAX_IN_FLIGHT = 4;

interface Waiting extends TokenToConsume {
  /** The asking request's context: its audit event carries its request id, address and actor. */
  context: RequestFields;
  resolve(consumed: ConsumedStepUp | null): void;
  reject(err: unknown): void;
}

/**
 * Consumes MFA-proxy tokens with group commit: the verifications that arrive while batches are
 * being written are written together in the next, in one transaction (one commit, one fsync):
 * one conditional UPDATE for all of them, then the audit event and the outbox event of each
 * token consumed, so none is consumed without its audit row and event, nor they without it.
 *
 * Each token is still decided individually and exactly once: the conditional write marks a token
 * consumed only if it was not yet (on every instance, by the database), and a jti asked for twice
 * in one batch is given to the first asker only. A failed batch rolls back whole, and each of its
 * verifications fails (nothing was consumed). A batch starts at the end of the event-loop turn in
 * which the first of its verifications arrived (no timer): a lone request never waits for company.
 */
@Injectable()
export class TokenConsumer {
  private queue: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;
  /** Batches run in the consumer's own async context, not in that of the request that happened to start them. */
  private readonly scope = new AsyncResource('TokenConsumer');

  constructor(
    private readonly stepUps: StepUpsRepository,
    private readonly audit: AuditLog,
    private readonly outbox: OutboxService,
    private readonly clock: Clock,
  ) {}

  /**
   * Consumes the token `jti` of `appId`: its step-up if this call consumed it, null if it did not.
   * With `tokenHash`, only if the token handed out had that hash (TokenToConsume); null then also
   * when the same jti was asked under another hash first in the same batch (the caller goes on to
   * the signed path, which asks without a hash and is decided in a batch of its own if need be).
   */
  consume(appId: string, jti: string, tokenHash: string | null = null): Promise<ConsumedStepUp | null> {
    // Not a token of ours: nothing to consume, and no place in a batch that other verifications share.
    if (!isTokenJti(jti)) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.queue.push({ appId, jti, tokenHash, context: { ...RequestContext.get() }, resolve, reject });
      this.schedule();
    });
  }

  /** Starts batches after the I/O of this loop turn: verifications that arrived in the same turn share one. */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= MAX_IN_FLIGHT) return;
    this.scheduled = true;
    this.scope.runInAsyncScope(() =>
      setImmediate(() => {
        this.scheduled = false;
        while (this.queue.length && this.inFlight < MAX_IN_FLIGHT) {
          const batch = this.queue.splice(0, MAX_BATCH);
          this.inFlight++;
          void this.write(batch).finally(() => {
            this.inFlight--;
            if (this.queue.length) this.schedule();
          });
        }
      }),
    );
  }

  private async write(batch: Waiting[]): Promise<void> {
    // One asker per token: a second ask for the same jti and hash in this batch finds it used. An
    // ask for the same jti under another hash (another string for the token) is not decided by the
    // first. Asked by its hash (the unsigned path) it is answered null now, and its caller decides
    // it by its signature: forged copies of one jti then cost one batch, not one batch each while
    // other apps' verifications wait behind them. Asked without a hash (the signed path: the token,
    // or the other ECDSA string of its signature) it goes first into the next batch.
    const first = new Map<string, Waiting>();
    const later: Waiting[] = [];
    const asked: Waiting[] = [];
    for (const w of batch) {
      const k = key(w.appId, w.jti);
      const f = first.get(k);
      if (!f) first.set(k, w);
      else if (f.tokenHash !== w.tokenHash) {
        if (w.tokenHash === null) later.push(w);
        else w.resolve(null);
        continue;
      }
      asked.push(w);
    }
    if (later.length) this.queue.unshift(...later);
    let consumed: ConsumedStepUp[];
    try {
      consumed = this.stepUps.ds.options.type === 'postgres' ? await this.writePostgres([...first.values()]) : await this.writeSqlite(first);
    } catch (err) {
      for (const w of asked) w.reject(err);
      return;
    }
    const byKey = new Map(consumed.map((s) => [key(s.appId, s.tokenJti!), s]));
    for (const w of asked) w.resolve(first.get(key(w.appId, w.jti)) === w ? (byKey.get(key(w.appId, w.jti)) ?? null) : null);
  }

  /**
   * PostgreSQL: one statement, so one round trip and one commit, and no transaction open between
   * statements: it consumes the tokens, and for each one consumed writes its audit event and its
   * outbox event, read from the consumed rows (AuditLog.insertSelectSql, OutboxService.insertSelectSql).
   * A statement is atomic: all of it commits or none.
   */
  private async writePostgres(tokens: Waiting[]): Promise<ConsumedStepUp[]> {
    const now = this.clock.now();
    const p = new PgParams();
    const at = p.add(now, 'bigint');
    const carried = [...AUDIT_CARRIED, ...OUTBOX_CARRIED];
    const perToken = tokens.map((w) => [w.appId, w.jti, w.tokenHash, ...this.audit.carried(w.context, now), ...this.outbox.carried(now)]);
    const columns = ['app_id', 'jti', 'token_hash', ...carried].map((_, i) => p.add(perToken.map((v) => v[i]), 'varchar[]'));
    const sql = `WITH asked AS (SELECT * FROM unnest(${columns.join(', ')}) AS t(app_id, jti, token_hash, ${carried.join(', ')})),
      ${this.stepUps.consumedCtesPg('asked', carried, at)},
      audited AS (${this.audit.insertSelectSql('consumed', {
        appId: 'consumed.app_id', at, userId: 'consumed.user_id', agentId: 'consumed.agent_id', model: 'consumed.model', taskId: 'consumed.task_id',
        action: 'consumed.action', resource: 'consumed.resource', type: 'mfa_proxy_token.consumed', outcome: 'success', status: 200,
      })}),
      events AS (${this.outbox.insertSelectSql('consumed', {
        appId: 'consumed.app_id', type: 'mfa_proxy_token.consumed', data: eventDataSql('consumed'), createdAt: at, createdIso: p.add(new Date(now).toISOString(), 'varchar'),
      })})
      SELECT consumed.*, (SELECT array_agg(DISTINCT delivery_status) FROM events) AS statuses FROM consumed`;
    const rows = await queryPrepared<ConsumedRow & { statuses: string[] | null }>(this.stepUps.ds, sql, p.values);
    if (rows.length) this.outbox.addedBy(rows[0].statuses ?? []);
    return rows.map(consumedOf);
  }

  /**
   * SQLite (one writer): the conditional writes, then the audit and outbox events, in one
   * synchronous transaction of prepared statements (the connection is ours for its duration).
   */
  private async writeSqlite(first: Map<string, Waiting>): Promise<ConsumedStepUp[]> {
    const { rows, statuses } = await onSqliteConnection(this.stepUps.ds, (db) =>
      db.transaction(() => {
        const now = this.clock.now();
        const rows = this.stepUps.consumeTokensSqlite(db, [...first.values()], now);
        this.audit.recordManySqlite(
          db,
          rows.map((s) => ({
            input: {
              appId: s.appId, type: 'mfa_proxy_token.consumed', outcome: 'success' as const, userId: s.userId, agentId: s.agentId, model: s.model,
              taskId: s.taskId, action: s.action, resource: s.resource, status: 200,
            },
            context: first.get(key(s.appId, s.tokenJti!))!.context,
          })),
        );
        const statuses = this.outbox.addManySqlite(db, rows.map((s) => ({ appId: s.appId, type: 'mfa_proxy_token.consumed' as const, data: eventData(s) })));
        return { rows, statuses };
      }),
    );
    // A batch that consumed nothing added nothing: nobody to wake (a replayed token's batch included).
    if (rows.length) this.outbox.addedBy(statuses);
    return rows;
  }
}

const key = (appId: string, jti: string) => `${appId}\u0000${jti}`;
