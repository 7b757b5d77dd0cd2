import { Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { FactorEntity } from './factor.entity.js';

@Injectable()
export class FactorsRepository {
  constructor(readonly ds: DataSource) {}

  active(appId: string, userId: string, m?: EntityManager): Promise<FactorEntity[]> {
    return (m ?? this.ds.manager).getRepository(FactorEntity).find({ where: { appId, userId, status: 'active' }, order: { createdAt: 'ASC' } });
  }

  /** Every factor of a user, pending ones included (for the user-deletion cascade). */
  allOf(m: EntityManager, appId: string, userId: string): Promise<FactorEntity[]> {
    return m.find(FactorEntity, { where: { appId, userId } });
  }

  find(appId: string, userId: string, id: string, m?: EntityManager): Promise<FactorEntity | null> {
    return (m ?? this.ds.manager).findOneBy(FactorEntity, { appId, userId, id });
  }

  insert(m: EntityManager, factor: FactorEntity): Promise<unknown> {
    return m.insert(FactorEntity, factor);
  }

  async delete(m: EntityManager, factor: FactorEntity): Promise<boolean> {
    const res = await m.delete(FactorEntity, { appId: factor.appId, id: factor.id });
    return (res.affected ?? 0) > 0;
  }

  /** pending → active, once. */
  async activate(m: EntityManager, appId: string, id: string, now: number): Promise<boolean> {
    const res = await m.update(FactorEntity, { appId, id, status: 'pending' }, { status: 'active', lastUsedAt: now });
    return (res.affected ?? 0) > 0;
  }

  async touch(m: EntityManager, appId: string, id: string, now: number): Promise<void> {
    await m.update(FactorEntity, { appId, id }, { lastUsedAt: now });
  }
}
