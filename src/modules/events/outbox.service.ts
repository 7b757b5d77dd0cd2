import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { Clock } from '../../common/clock.js';
import { newId } from '../../common/ids.js';
import { OutboxEntity } from './outbox.entity.js';

export type EventType =
  | 'step_up.created'
  | 'step_up.approved'
  | 'step_up.denied'
  | 'step_up.expired'
  | 'step_up.cancelled'
  | 'mfa_proxy_token.consumed'
  | 'agent.revoked'
  | 'agent.cooldown'
  | 'agent.suspended'
  | 'task.ended'
  | 'connection.reauth_required';

/** The transactional outbox: an event is written with the change that causes it, or not at all. */
@Injectable()
export class OutboxService {
  constructor(private readonly clock: Clock) {}

  async add(m: EntityManager, appId: string, type: EventType, data: Record<string, unknown>): Promise<string> {
    const id = newId('event');
    const createdAt = this.clock.now();
    await m.insert(OutboxEntity, {
      id, appId, type, payload: { id, type, createdAt: new Date(createdAt).toISOString(), data }, createdAt, deliveredAt: null,
      deliveryStatus: 'pending', attempts: 0, nextAttemptAt: createdAt, claimedUntil: null, claimedBy: null, lastError: null,
    });
    return id;
  }
}
