import { Injectable } from '@nestjs/common';
import { DataSource, LessThanOrEqual, type EntityManager } from 'typeorm';
import { HumanSessionEntity } from './human-session.entity.js';

@Injectable()
export class HumanSessionsRepository {
  constructor(readonly ds: DataSource) {}

  insert(m: EntityManager, s: HumanSessionEntity): Promise<unknown> {
    return m.insert(HumanSessionEntity, s);
  }

  /**
   * A session by the hash of its cookie, only while its user and app exist: a deleted user (or app)
   * ends its sessions even before the cascade's delete reaches them.
   */
  findByTokenHash(tokenHash: string): Promise<HumanSessionEntity | null> {
    return this.ds
      .getRepository(HumanSessionEntity)
      .createQueryBuilder('s')
      .innerJoin('users', 'u', 'u.id = s.user_id AND u.app_id = s.app_id')
      .innerJoin('apps', 'a', 'a.id = s.app_id')
      .where('s.token_hash = :tokenHash', { tokenHash })
      .getOne();
  }

  /** last_seen_at moves forward only when it is older than `before`: at most one write a minute per session. */
  async touch(s: HumanSessionEntity, now: number, before: number): Promise<void> {
    await this.ds
      .createQueryBuilder()
      .update(HumanSessionEntity)
      .set({ lastSeenAt: now })
      .where('id = :id AND app_id = :appId AND last_seen_at < :before', { id: s.id, appId: s.appId, before })
      .execute();
  }

  async markFactorProof(appId: string, id: string, now: number, m?: EntityManager): Promise<void> {
    await (m ?? this.ds.manager).update(HumanSessionEntity, { appId, id }, { factorProvedAt: now });
  }

  async delete(appId: string, id: string): Promise<boolean> {
    const res = await this.ds.getRepository(HumanSessionEntity).delete({ appId, id });
    return (res.affected ?? 0) > 0;
  }

  async deleteForUser(m: EntityManager, appId: string, userId: string): Promise<void> {
    await m.delete(HumanSessionEntity, { appId, userId });
  }

  /** Sessions past their absolute end (housekeeping on sign-in; idle ones are refused and deleted when presented). */
  async deleteEnded(now: number): Promise<void> {
    await this.ds.getRepository(HumanSessionEntity).delete({ expiresAt: LessThanOrEqual(now) });
  }
}
