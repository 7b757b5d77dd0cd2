import { Injectable } from '@nestjs/common';
import { DataSource, IsNull, LessThanOrEqual, MoreThan, type EntityManager } from 'typeorm';
import type { Initiator, StepUpEntity, StepUpStatus } from './step-up.entity.js';
import { StepUpEntity as Entity } from './step-up.entity.js';

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
  async markDelivered(s: StepUpEntity, jti: string, now: number, tokenExpiresAt: number): Promise<boolean> {
    const res = await this.repo()
      .createQueryBuilder()
      .update()
      .set({ tokenJti: jti, tokenDeliveredAt: now, tokenExpiresAt })
      .where('id = :id AND app_id = :appId AND status = :approved AND token_delivered_at IS NULL', { id: s.id, appId: s.appId, approved: 'approved' })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  /** Verify-and-consume: one conditional write; true when this call consumed the token. */
  async consumeToken(m: EntityManager, appId: string, jti: string, now: number): Promise<boolean> {
    const res = await m
      .createQueryBuilder()
      .update(Entity)
      .set({ consumedAt: now })
      .where('app_id = :appId AND token_jti = :jti AND consumed_at IS NULL AND status = :approved', { appId, jti, approved: 'approved' })
      .execute();
    return (res.affected ?? 0) === 1;
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

  /** When the agent's human denials since `since` happened, newest first. */
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

  pendingOf(m: EntityManager, where: { appId: string; agentId?: string; userId?: string }): Promise<StepUpEntity[]> {
    return m.find(Entity, { where: { ...where, status: 'pending' } });
  }
}
