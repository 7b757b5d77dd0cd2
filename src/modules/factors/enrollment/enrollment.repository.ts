import { Injectable } from '@nestjs/common';
import { DataSource, MoreThan, type EntityManager } from 'typeorm';
import { EnrollmentLinkEntity } from './enrollment-link.entity.js';

@Injectable()
export class EnrollmentRepository {
  constructor(private readonly ds: DataSource) {}

  private get repo() {
    return this.ds.getRepository(EnrollmentLinkEntity);
  }

  insert(link: EnrollmentLinkEntity): Promise<unknown> {
    return this.repo.insert(link);
  }

  async deleteForUser(m: EntityManager, appId: string, userId: string): Promise<void> {
    await m.delete(EnrollmentLinkEntity, { appId, userId });
  }

  /** A link by its token hash, if it has not expired. */
  findLive(tokenHash: string, now: number): Promise<EnrollmentLinkEntity | null> {
    return this.repo.findOneBy({ tokenHash, expiresAt: MoreThan(now) });
  }

  async setChallenge(id: string, challenge: string, expiresAt: number, name: string | null): Promise<void> {
    await this.repo.update({ id }, { webauthnChallenge: challenge, webauthnChallengeExpiresAt: expiresAt, webauthnName: name });
  }

  /**
   * Takes the pending challenge and clears it in one conditional update: whoever clears it
   * owns it, so a challenge serves exactly one verify attempt, good or bad.
   */
  async takeChallenge(link: EnrollmentLinkEntity, now: number): Promise<{ challenge: string; name: string | null } | null> {
    const fresh = await this.repo.findOneBy({ id: link.id });
    if (!fresh?.webauthnChallenge) return null;
    const res = await this.repo
      .createQueryBuilder()
      .update()
      .set({ webauthnChallenge: null, webauthnChallengeExpiresAt: null, webauthnName: null })
      .where('id = :id AND webauthn_challenge = :challenge', { id: link.id, challenge: fresh.webauthnChallenge })
      .execute();
    if ((res.affected ?? 0) !== 1) return null;
    if ((fresh.webauthnChallengeExpiresAt ?? 0) <= now) return null;
    return { challenge: fresh.webauthnChallenge, name: fresh.webauthnName };
  }
}
