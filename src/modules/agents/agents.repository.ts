import { Injectable } from '@nestjs/common';
import { DataSource, Not, type EntityManager } from 'typeorm';
import { AgentEntity } from './agent.entity.js';

@Injectable()
export class AgentsRepository {
  constructor(readonly ds: DataSource) {}

  private repo(m?: EntityManager) {
    return (m ?? this.ds.manager).getRepository(AgentEntity);
  }

  /** A live (not revoked) agent of this app. */
  findLive(appId: string, id: string): Promise<AgentEntity | null> {
    return this.repo().findOneBy({ appId, id, status: Not('revoked') });
  }

  /** Any agent by id, across apps: only for authenticating the agent itself. */
  findById(id: string): Promise<AgentEntity | null> {
    return this.repo().findOneBy({ id });
  }

  list(appId: string, userId?: string): Promise<AgentEntity[]> {
    return this.repo().find({ where: { appId, status: Not('revoked'), ...(userId ? { userId } : {}) }, order: { createdAt: 'ASC' } });
  }

  /** The user's agents that are not revoked yet (the user-deletion cascade). */
  liveOfUser(m: EntityManager, appId: string, userId: string): Promise<AgentEntity[]> {
    return this.repo(m).find({ where: { appId, userId, status: Not('revoked') } });
  }

  insert(m: EntityManager, agent: AgentEntity): Promise<unknown> {
    return m.insert(AgentEntity, agent);
  }

  /** live → revoked, once: true when this call revoked it. */
  async revokeIn(m: EntityManager, appId: string, id: string, now: number): Promise<boolean> {
    const res = await m.update(AgentEntity, { appId, id, status: Not('revoked') }, { status: 'revoked', revokedAt: now, updatedAt: now });
    return (res.affected ?? 0) > 0;
  }

  /** active → suspended, once (anti push-fatigue): true when this call suspended it. */
  async suspendIn(m: EntityManager, appId: string, id: string, now: number): Promise<boolean> {
    const res = await m.update(AgentEntity, { appId, id, status: 'active' }, { status: 'suspended', updatedAt: now });
    return (res.affected ?? 0) > 0;
  }

  /** Updates a live agent; false when it does not exist or is revoked. */
  async updateLive(appId: string, id: string, patch: Partial<AgentEntity>, m?: EntityManager): Promise<boolean> {
    const res = await this.repo(m).update({ appId, id, status: Not('revoked') }, patch);
    return (res.affected ?? 0) > 0;
  }
}
