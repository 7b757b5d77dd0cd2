import { Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { AgentEntity } from '../agents/agent.entity.js';
import { cancelPendingStepUps } from '../step-ups/cascade.js';
import type { StepUpEntity } from '../step-ups/step-up.entity.js';
import { TaskEntity, UserConnectionEntity } from '../tasks/task.entity.js';
import { EnrollmentLinkEntity } from '../factors/enrollment/enrollment-link.entity.js';
import { FactorEntity } from '../factors/factor.entity.js';
import { TotpSecretEntity } from '../factors/totp/totp-secret.entity.js';
import { WebauthnCredentialEntity } from '../factors/webauthn/webauthn-credential.entity.js';
import { UserEntity } from './user.entity.js';

@Injectable()
export class UsersRepository {
  constructor(private readonly ds: DataSource) {}

  find(appId: string, id: string): Promise<UserEntity | null> {
    return this.ds.getRepository(UserEntity).findOneBy({ appId, id });
  }

  findByExternalId(appId: string, externalId: string): Promise<UserEntity | null> {
    return this.ds.getRepository(UserEntity).findOneBy({ appId, externalId });
  }

  insert(user: UserEntity): Promise<unknown> {
    return this.ds.getRepository(UserEntity).insert(user);
  }

  activeFactors(appId: string, userId: string): Promise<FactorEntity[]> {
    return this.ds.getRepository(FactorEntity).find({ where: { appId, userId, status: 'active' }, order: { createdAt: 'ASC' } });
  }

  /**
   * Deletes the user, its factors and enrollment links, and revokes its agents, in one transaction.
   * Returns the ids of the agents revoked, or null when the user did not exist.
   */
  async deleteCascade(appId: string, id: string, now: number, alsoInTransaction: (m: EntityManager, cancelled: StepUpEntity[]) => Promise<void>): Promise<string[] | null> {
    return this.ds.transaction(async (m) => {
      const deleted = await m.delete(UserEntity, { appId, id });
      if (!deleted.affected) return null;
      for (const entity of [WebauthnCredentialEntity, TotpSecretEntity, FactorEntity, EnrollmentLinkEntity]) {
        await m.delete(entity, { appId, userId: id });
      }
      const agents = await m.find(AgentEntity, { select: { id: true }, where: { appId, userId: id } });
      await m
        .createQueryBuilder()
        .update(AgentEntity)
        .set({ status: 'revoked', revokedAt: now, updatedAt: now })
        .where('app_id = :appId AND user_id = :id AND status <> :revoked', { appId, id, revoked: 'revoked' })
        .execute();
      // Their pending step-ups can no longer be approved by anyone.
      await alsoInTransaction(m, await cancelPendingStepUps(m, { appId, userId: id }, 'user_deleted', now));
      await m.update(TaskEntity, { appId, userId: id, status: 'active' }, { status: 'ended', endReason: 'user_deleted', endedAt: now });
      await m.delete(UserConnectionEntity, { appId, userId: id });
      return agents.map((a) => a.id);
    });
  }
}
