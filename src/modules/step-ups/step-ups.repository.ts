import { Injectable } from '@nestjs/common';
import { DataSource, IsNull, LessThanOrEqual, MoreThan, type EntityManager } from 'typeorm';
import type { SqliteSession } from '../../database/sqlite-serial.js';
import type { Initiator, StepUpEntity, StepUpStatus } from './step-up.entity.js';
import { StepUpEntity as Entity } from './step-up.entity.js';

/** What verification reports and announces of a step-up whose token it consumed. */
export type ConsumedStepUp = Pick<
  StepUpEntity,
  'id' | 'appId' | 'userId' | 'agentId' | 'model' | 'taskId' | 'action' | 'resource' | 'detailsHash' | 'method' | 'decidedAt' | 'initiator' | 'tokenJti'
>;

const CONSUMED_COLUMNS = ['id', 'app_id', 'user_id', 'agent_id', 'model', 'task_id', 'action', 'resource', 'details_hash', 'method', 'decided_at', 'initiator', 'token_jti'] as const;
export type ConsumedRow = Record<(typeof CONSUMED_COLUMNS)[number], string | null>;
/** consumeTokensSqlite's write: consumed only if approved and not yet consumed (and, when a hash is asked for, handed out with it). */
const CONSUME_SQLITE = `UPDATE step_ups SET consumed_at = ? WHERE token_jti = ? AND app_id = ? AND consumed_at IS NULL AND status = 'approved' AND (? IS NULL OR token_hash = ?) RETURNING ${CONSUMED_COLUMNS.join(', ')}`;

/**
 * A token to consume: its step-up's app and token jti, and `tokenHash` when the token is admitted
 * by its hash alone (not its signature): then only the token handed out with that hash is consumed.
 */
export interface TokenToConsume {
  appId: string;
  jti: string;
  tokenHash: string | null;
}

/** A row of `consumed` (consumedCtesPg) or of a consuming UPDATE's RETURNING. */
export function consumedOf(r: ConsumedRow): ConsumedStepUp {
  return {
    id: r.id!, appId: r.app_id!, userId: r.user_id!, agentId: r.agent_id!, model: r.model!, taskId: r.task_id, action: r.action!, resource: r.resource,
    detailsHash: r.details_hash!, method: r.method as ConsumedStepUp['method'], decidedAt: r.decided_at === null ? null : Number(r.decided_at),
    initiator: r.initiator as ConsumedStepUp['initiator'], tokenJti: r.token_jti,
  };
}

@Injectable()
export class StepUpsRepository {
  constructor(readonly ds: DataSource) {}

  private repo(m?: EntityManager) {
    return (m ?? this.ds.manager).getRepository(Entity);
  }

  find(appId: string, id: string, m?: EntityManager): Promise<StepUpEntity | null> {
    return this.repo(m).findOneBy({ appId, id });
  }

  findByApprovalHash(hash: string): Promise<StepUpEntity | null> {
    return this.repo().findOneBy({ approvalTokenHash: hash });
  }

  findByIdempotencyKey(appId: string, agentId: string, initiator: Initiator, key: string, m?: EntityManager): Promise<StepUpEntity | null> {
    return this.repo(m).findOneBy({ appId, agentId, initiator, idempotencyKey: key });
  }

  /** After the idempotency window the key is free again: the old step-up lets go of it. */
  async releaseIdempotencyKey(m: EntityManager, s: StepUpEntity): Promise<void> {
    await this.repo(m).update({ appId: s.appId, id: s.id }, { idempotencyKey: null });
  }

  /** A still-pending step-up of this agent for the identical request (anti push-fatigue dedupe). */
  findIdenticalPending(s: Pick<StepUpEntity, 'appId' | 'agentId' | 'initiator' | 'requestHash'>, now: number, m?: EntityManager): Promise<StepUpEntity | null> {
    return this.repo(m).findOneBy({ appId: s.appId, agentId: s.agentId, initiator: s.initiator, requestHash: s.requestHash, status: 'pending', expiresAt: MoreThan(now) });
  }

  countPendingForUser(appId: string, userId: string, now: number, m?: EntityManager): Promise<number> {
    return this.repo(m).countBy({ appId, userId, status: 'pending', expiresAt: MoreThan(now) });
  }

  insert(m: EntityManager, s: StepUpEntity): Promise<unknown> {
    return m.insert(Entity, s as never);
  }

  /**
   * The one conditional write that decides a step-up: pending → `to`, only while it is pending
   * (and, unless expiring it, not yet expired). True when this call made the decision.
   */
  async decide(m: EntityManager, s: StepUpEntity, to: Exclude<StepUpStatus, 'pending'>, now: number, fields: Partial<StepUpEntity> = {}): Promise<boolean> {
    const qb = m
      .createQueryBuilder()
      .update(Entity)
      .set({ status: to, decidedAt: now, webauthnNonce: null, webauthnNonceExpiresAt: null, ...fields } as never)
      .where('id = :id AND app_id = :appId AND status = :pending', { id: s.id, appId: s.appId, pending: 'pending' });
    if (to === 'expired') qb.andWhere('expires_at <= :now', { now });
    else qb.andWhere('expires_at > :now', { now });
    const res = await qb.execute();
    return (res.affected ?? 0) === 1;
  }

  /** Token hand-out: only the first fetch after approval records the jti (token_delivered_at IS NULL). */
  async markDelivered(s: StepUpEntity, jti: string, now: number, tokenExpiresAt: number, tokenHash: string | null = null): Promise<boolean> {
    const res = await this.repo()
      .createQueryBuilder()
      .update()
      .set({ tokenJti: jti, tokenHash, tokenDeliveredAt: now, tokenExpiresAt })
      .where('id = :id AND app_id = :appId AND status = :approved AND token_delivered_at IS NULL', { id: s.id, appId: s.appId, approved: 'approved' })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  /**
   * SQLite: single use for a batch of tokens in the caller's synchronous transaction
   * (onSqliteConnection), one prepared conditional write each (SQLite has one writer: they cannot
   * race): each approved, unconsumed step-up whose (app, token jti) is asked for is marked consumed
   * and returned. A token absent from the result was used before, cancelled, or never ours.
   * PostgreSQL composes consumedCtesPg into one statement.
   */
  consumeTokensSqlite(db: SqliteSession, tokens: TokenToConsume[], now: number): ConsumedStepUp[] {
    const out: ConsumedStepUp[] = [];
    for (const t of tokens) for (const row of db.all<ConsumedRow>(CONSUME_SQLITE, now, t.jti, t.appId, t.tokenHash, t.tokenHash)) out.push(consumedOf(row));
    return out;
  }

  /**
   * PostgreSQL: the CTEs `locked` and `consumed` of a statement that consumes the tokens of the
   * relation `asked` (columns app_id, jti, token_hash (TokenToConsume) and `carried`) and, in the same statement, makes what
   * the consumption causes (its audit and outbox events read `consumed`): one round trip and one
   * commit for a whole batch, with no transaction left open between statements. `consumed` has a
   * row per token this statement consumed (CONSUMED_COLUMNS and the carried columns; consumedOf
   * reads it): a token is consumed only if it was not yet, on every instance, by the row lock and
   * the re-checked condition. Locks are taken in jti order: concurrent batches may share tokens.
   */
  consumedCtesPg(asked: string, carried: readonly string[], now: string): string {
    return `locked AS (
        SELECT s.id${carried.map((c) => `, t.${c}`).join('')} FROM step_ups s JOIN ${asked} t ON s.token_jti = t.jti AND s.app_id = t.app_id
        WHERE s.consumed_at IS NULL AND s.status = 'approved' AND (t.token_hash IS NULL OR s.token_hash = t.token_hash)
        ORDER BY s.token_jti
        FOR UPDATE OF s
      ),
      consumed AS (
        UPDATE step_ups s SET consumed_at = ${now} FROM locked
        WHERE s.id = locked.id AND s.consumed_at IS NULL AND s.status = 'approved'
        RETURNING ${[...CONSUMED_COLUMNS.map((c) => `s.${c}`), ...carried.map((c) => `locked.${c}`)].join(', ')}
      )`;
  }

  findByTokenJti(appId: string, jti: string): Promise<StepUpEntity | null> {
    return this.repo().findOneBy({ appId, tokenJti: jti });
  }

  /** Stores a fresh WebAuthn nonce for the approval ceremony. */
  async setNonce(s: StepUpEntity, nonce: string, expiresAt: number): Promise<void> {
    await this.repo().update({ id: s.id, appId: s.appId, status: 'pending' }, { webauthnNonce: nonce, webauthnNonceExpiresAt: expiresAt });
  }

  /** Takes the nonce and clears it in one conditional write: one verify attempt per options call. */
  async takeNonce(s: StepUpEntity, now: number): Promise<string | null> {
    const fresh = await this.find(s.appId, s.id);
    if (!fresh?.webauthnNonce) return null;
    const res = await this.repo()
      .createQueryBuilder()
      .update()
      .set({ webauthnNonce: null, webauthnNonceExpiresAt: null })
      .where('id = :id AND webauthn_nonce = :nonce', { id: s.id, nonce: fresh.webauthnNonce })
      .execute();
    if ((res.affected ?? 0) !== 1 || (fresh.webauthnNonceExpiresAt ?? 0) <= now) return null;
    return fresh.webauthnNonce;
  }

  /** Counts one failed code; returns the failures so far, or null if the step-up is no longer pending. */
  async addTotpFailure(m: EntityManager, s: StepUpEntity): Promise<number | null> {
    const res = await m
      .createQueryBuilder()
      .update(Entity)
      .set({ totpFailures: () => 'totp_failures + 1' })
      .where('id = :id AND app_id = :appId AND status = :pending', { id: s.id, appId: s.appId, pending: 'pending' })
      .execute();
    if ((res.affected ?? 0) !== 1) return null;
    return (await m.findOneBy(Entity, { id: s.id }))?.totpFailures ?? null;
  }

  /** When the agent's human denials since `since` happened, newest first (ix_step_ups_agent_denied: status written out, to match the partial index). */
  async humanDenials(appId: string, agentId: string, since: number): Promise<number[]> {
    const rows = await this.repo()
      .createQueryBuilder('s')
      .select('s.decided_at', 'decided_at')
      .where("s.app_id = :appId AND s.agent_id = :agentId AND s.status = 'denied' AND s.reason LIKE 'denied_by_user%' AND s.decided_at > :since", { appId, agentId, since })
      .orderBy('s.decided_at', 'DESC')
      .getRawMany<{ decided_at: string | number }>();
    return rows.map((r) => Number(r.decided_at));
  }

  expiredPending(now: number, limit: number): Promise<StepUpEntity[]> {
    return this.repo().find({ where: { status: 'pending', expiresAt: LessThanOrEqual(now) }, take: limit });
  }

  approvedUncollected(m: EntityManager, appId: string, agentId: string): Promise<StepUpEntity[]> {
    return m.find(Entity, { where: { appId, agentId, status: 'approved', tokenDeliveredAt: IsNull() } });
  }

  /** The token of an approved step-up will never be handed out: delivered as nothing (no jti). */
  async voidHandOut(m: EntityManager, s: StepUpEntity, now: number): Promise<void> {
    await m.update(Entity, { appId: s.appId, id: s.id, status: 'approved', tokenDeliveredAt: IsNull() }, { tokenDeliveredAt: now, tokenJti: null, reason: 'boundaries_narrowed' });
  }

  /** A backchannel step-up by the hash of its handle (ux_step_ups_backchannel_hash), within the app. */
  findByBackchannelHash(appId: string, hash: string): Promise<StepUpEntity | null> {
    return this.repo().findOneBy({ appId, backchannelHash: hash });
  }

  /**
   * One poll of a pending backchannel step-up, as one conditional write: recorded only when the
   * previous answered poll is at least `intervalMs` old. False: polled too fast (slow_down), on
   * every instance alike.
   */
  async markPolled(s: StepUpEntity, now: number, intervalMs: number): Promise<boolean> {
    const res = await this.repo()
      .createQueryBuilder()
      .update()
      .set({ backchannelPolledAt: now })
      .where('id = :id AND app_id = :appId AND (backchannel_polled_at IS NULL OR backchannel_polled_at <= :before)', { id: s.id, appId: s.appId, before: now - intervalMs })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  /** A user's step-ups for the dashboard, newest first (pending only, or all): ix_step_ups_user_status_created, ix_step_ups_user_created. */
  ofUser(appId: string, userId: string, pendingOnly: boolean, limit: number): Promise<StepUpEntity[]> {
    return this.repo().find({ where: { appId, userId, ...(pendingOnly ? { status: 'pending' as const } : {}) }, order: { createdAt: 'DESC' }, take: limit });
  }

  /**
   * A user's approved sudo step-ups decided since `since` (the longest grant is 900 s): candidates
   * for active grants. ix_step_ups_user_sudo: status and grant type written out, to match the partial index.
   */
  approvedSudoOfUser(appId: string, userId: string, since: number): Promise<StepUpEntity[]> {
    return this.repo()
      .createQueryBuilder('s')
      .where("s.app_id = :appId AND s.user_id = :userId AND s.status = 'approved' AND s.grant_type = 'sudo' AND s.decided_at > :since", { appId, userId, since })
      .orderBy('s.decided_at', 'DESC')
      .getMany();
  }

  /**
   * The human ends a sudo grant: one conditional write marks it (`reason`), and a token not yet
   * handed out never will be (delivered as nothing, like voidHandOut). True when this call ended it.
   */
  async endSudoGrant(m: EntityManager, s: StepUpEntity, reason: string, now: number): Promise<boolean> {
    const res = await m
      .createQueryBuilder()
      .update(Entity)
      .set({ reason, tokenDeliveredAt: () => `COALESCE(token_delivered_at, ${Number(now)})` } as never)
      .where("id = :id AND app_id = :appId AND status = 'approved' AND grant_type = 'sudo' AND (reason IS NULL OR reason <> :reason)", { id: s.id, appId: s.appId, reason })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  pendingOf(m: EntityManager, where: { appId: string; agentId?: string; userId?: string }): Promise<StepUpEntity[]> {
    return m.find(Entity, { where: { ...where, status: 'pending' } });
  }
}
