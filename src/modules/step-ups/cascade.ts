import type { EntityManager } from 'typeorm';
import type { AuditService } from '../audit/audit.service.js';
import type { OutboxService } from '../events/outbox.service.js';
import { StepUpEntity } from './step-up.entity.js';

/** Cancels pending step-ups matching `where` (one conditional write each) and returns those it cancelled. */
export async function cancelPendingStepUps(m: EntityManager, where: { appId: string; agentId?: string; userId?: string }, reason: string, now: number): Promise<StepUpEntity[]> {
  const pending = await m.find(StepUpEntity, { where: { ...where, status: 'pending' } });
  const cancelled: StepUpEntity[] = [];
  for (const s of pending) {
    const res = await m.update(StepUpEntity, { id: s.id, status: 'pending' }, { status: 'cancelled', reason, decidedAt: now });
    if (res.affected) cancelled.push(s);
  }
  return cancelled;
}

/** The audit and outbox events of step-ups a cascade cancelled, in the cascade's transaction. */
export async function recordCascadeCancellations(m: EntityManager, audit: AuditService, outbox: OutboxService, cancelled: StepUpEntity[], reason: string): Promise<void> {
  for (const s of cancelled) {
    await audit.record(m, { appId: s.appId, type: 'step_up.cancelled', outcome: 'denied', userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId, action: s.action, resource: s.resource });
    await outbox.add(m, s.appId, 'step_up.cancelled', {
      stepUpId: s.id, agentId: s.agentId, userId: s.userId, model: s.model, taskId: s.taskId, action: s.action, resource: s.resource, detailsHash: s.detailsHash, status: 'cancelled', reason,
    });
  }
}
