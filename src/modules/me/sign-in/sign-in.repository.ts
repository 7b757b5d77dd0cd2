import { Injectable } from '@nestjs/common';
import { DataSource, LessThanOrEqual, type EntityManager } from 'typeorm';
import { LoginChallengeEntity, SignInLinkEntity, type ChallengePurpose } from './sign-in-link.entity.js';

/** Sign-in links and login challenges: the queries of the sign-in ceremonies. */
@Injectable()
export class SignInRepository {
  constructor(readonly ds: DataSource) {}

  insertLink(link: SignInLinkEntity): Promise<unknown> {
    return this.ds.getRepository(SignInLinkEntity).insert(link);
  }

  findLinkByTokenHash(tokenHash: string): Promise<SignInLinkEntity | null> {
    return this.ds.getRepository(SignInLinkEntity).findOneBy({ tokenHash });
  }

  findLink(id: string, m?: EntityManager): Promise<SignInLinkEntity | null> {
    return (m ?? this.ds.manager).findOneBy(SignInLinkEntity, { id });
  }

  async setChallenge(link: SignInLinkEntity, challenge: string, expiresAt: number): Promise<void> {
    await this.ds.getRepository(SignInLinkEntity).update({ id: link.id, appId: link.appId }, { webauthnChallenge: challenge, webauthnChallengeExpiresAt: expiresAt });
  }

  /**
   * Takes the link's pending challenge if it is `challenge` and live, clearing it in one conditional
   * write: one verify attempt per options call. False when no such challenge is pending (none,
   * superseded by a later options call, reused, or expired).
   */
  async takeChallenge(link: SignInLinkEntity, challenge: string, now: number): Promise<boolean> {
    const res = await this.ds
      .createQueryBuilder()
      .update(SignInLinkEntity)
      .set({ webauthnChallenge: null, webauthnChallengeExpiresAt: null })
      .where('id = :id AND app_id = :appId AND webauthn_challenge = :challenge AND webauthn_challenge_expires_at > :now', { id: link.id, appId: link.appId, challenge, now })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  /** Single use: the one conditional write that spends the link. True when this call spent it. */
  async markUsed(m: EntityManager, link: SignInLinkEntity, now: number, maxAttempts: number): Promise<boolean> {
    const res = await m
      .createQueryBuilder()
      .update(SignInLinkEntity)
      .set({ usedAt: now, webauthnChallenge: null, webauthnChallengeExpiresAt: null })
      .where('id = :id AND app_id = :appId AND used_at IS NULL AND expires_at > :now AND attempts < :max', { id: link.id, appId: link.appId, now, max: maxAttempts })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  /** Counts one failed proof (while the link is unused); returns the failures so far, or null when it is spent. */
  async addFailure(link: SignInLinkEntity, m?: EntityManager): Promise<number | null> {
    const manager = m ?? this.ds.manager;
    const res = await manager
      .createQueryBuilder()
      .update(SignInLinkEntity)
      .set({ attempts: () => 'attempts + 1' })
      .where('id = :id AND app_id = :appId AND used_at IS NULL', { id: link.id, appId: link.appId })
      .execute();
    if ((res.affected ?? 0) !== 1) return null;
    return (await manager.findOneBy(SignInLinkEntity, { id: link.id }))?.attempts ?? null;
  }

  async deleteLinksOfUser(m: EntityManager, appId: string, userId: string): Promise<void> {
    await m.delete(SignInLinkEntity, { appId, userId });
  }

  async insertChallenge(c: LoginChallengeEntity): Promise<void> {
    await this.ds.getRepository(LoginChallengeEntity).insert(c);
  }

  /** Single use: deleting the live challenge of this purpose is taking it. */
  async takeChallengeByHash(challengeHash: string, now: number, purpose: ChallengePurpose): Promise<boolean> {
    const res = await this.ds
      .createQueryBuilder()
      .delete()
      .from(LoginChallengeEntity)
      .where('challenge_hash = :challengeHash AND expires_at > :now AND purpose = :purpose', { challengeHash, now, purpose })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  /** Unexpired login challenges: how many, and when the first of them expires. */
  async outstandingLoginChallenges(now: number): Promise<{ count: number; firstExpiry: number | null }> {
    const row = await this.ds
      .getRepository(LoginChallengeEntity)
      .createQueryBuilder('c')
      .select('COUNT(*)', 'count')
      .addSelect('MIN(c.expires_at)', 'first')
      .where('c.expires_at > :now AND c.purpose = :purpose', { now, purpose: 'login' })
      .getRawOne<{ count: string | number; first: string | number | null }>();
    return { count: Number(row?.count ?? 0), firstExpiry: row?.first == null ? null : Number(row.first) };
  }

  /** Housekeeping: expired challenges and links. */
  async deleteExpired(now: number): Promise<void> {
    await this.ds.getRepository(LoginChallengeEntity).delete({ expiresAt: LessThanOrEqual(now) });
    await this.ds.getRepository(SignInLinkEntity).delete({ expiresAt: LessThanOrEqual(now - 86_400_000) });
  }
}
