import { Global, Injectable, Module } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { Clock } from '../../common/clock.js';
import { newId } from '../../common/ids.js';
import { RequestContext } from '../../common/request-context.js';
import { AuditEventEntity } from './audit-event.entity.js';

export interface AuditInput {
  appId: string;
  type: string;
  outcome: 'success' | 'failure' | 'denied';
  userId?: string | null;
  agentId?: string | null;
  model?: string | null;
  taskId?: string | null;
  action?: string | null;
  resource?: string | null;
  status?: number | null;
}

/** Strips control characters and caps length: agent-written text is stored bounded and safe. */
export function safeText(value: string | null | undefined, max: number): string | null {
  if (value === null || value === undefined) return null;
  return value.replace(/[\u0000-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/g, ' ').slice(0, max);
}

/** Appends audit events; called inside the transaction of the state change it records. */
@Injectable()
export class AuditService {
  constructor(private readonly clock: Clock) {}

  async record(m: EntityManager, input: AuditInput): Promise<void> {
    const ctx = RequestContext.get();
    await m.insert(AuditEventEntity, {
      id: newId('event'),
      appId: input.appId,
      at: this.clock.now(),
      requestId: ctx.requestId ?? null,
      actorType: ctx.actorType ?? 'system',
      actorId: ctx.actorId ?? null,
      userId: input.userId ?? ctx.userId ?? null,
      agentId: input.agentId ?? ctx.agentId ?? null,
      model: safeText(input.model ?? ctx.model, 200),
      taskId: safeText(input.taskId ?? ctx.taskId, 128),
      type: input.type,
      action: safeText(input.action, 64),
      resource: safeText(input.resource, 512),
      outcome: input.outcome,
      status: input.status ?? null,
      ip: ctx.ip ?? null,
    });
  }
}

@Global()
@Module({ providers: [AuditService], exports: [AuditService] })
export class AuditModule {}
