import { Injectable } from '@nestjs/common';
import { DataSource, Not, type EntityManager } from 'typeorm';
import { cancelPendingStepUps } from '../step-ups/cascade.js';
import type { StepUpEntity } from '../step-ups/step-up.entity.js';
import { TaskEntity } from '../tasks/task.entity.js';
import { AgentEntity } from './agent.entity.js';

@Injectable()
export class AgentsRepository {
  constructor(private readonly ds: DataSource) {}

  private get repo() {
    return this.ds.getRepository(AgentEntity);
  }

  /** A live (not revoked) agent of this app. */
  findLive(appId: string, id: string): Promise<AgentEntity | null> {
    return this.repo.findOneBy({ appId, id, status: Not('revoked') });
  }

  /** Any agent by id, across apps: only for authenticating the agent itself. */
  findById(id: string): Promise<AgentEntity | null> {
    return this.repo.findOneBy({ id });
  }

  list(appId: string, userId?: string): Promise<AgentEntity[]> {
    return this.repo.find({ where: { appId, status: Not('revoked'), ...(userId ? { userId } : {}) }, order: { createdAt: 'ASC' } });
  }

  insert(agent: AgentEntity): Promise<unknown> {
    return this.repo.insert(agent);
  }

  /** Revokes a live agent, cancels its pending step-ups and ends its tasks; `alsoInTransaction` gets the cancelled step-ups. */
  async revoke(appId: string, id: string, now: number, alsoInTransaction: (m: EntityManager, cancelled: StepUpEntity[]) => Promise<void>): Promise<boolean> {
    return this.ds.transaction(async (m) => {
      const res = await m.update(AgentEntity, { appId, id, status: Not('revoked') }, { status: 'revoked', revokedAt: now, updatedAt: now });
      if (!res.affected) return false;
      const cancelled = await cancelPendingStepUps(m, { appId, agentId: id }, 'agent_revoked', now);
      await m.update(TaskEntity, { appId, agentId: id, status: 'active' }, { status: 'ended', endReason: 'agent_revoked', endedAt: now });
      await alsoInTransaction(m, cancelled);
      return true;
    });
  }

  /** Updates a live agent; false when it does not exist or is revoked. */
  async updateLive(appId: string, id: string, patch: Partial<AgentEntity>): Promise<boolean> {
    const res = await this.repo.update({ appId, id, status: Not('revoked') }, patch);
    return (res.affected ?? 0) > 0;
  }
}
