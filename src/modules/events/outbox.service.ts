import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { Clock } from '../../common/clock.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { newId } from '../../common/ids.js';
import { openEventPayload, sealEventData, type EventPayload } from './outbox-payload.js';
import type { OutboxEntity } from './outbox.entity.js';
import { OutboxRepository } from './outbox.repository.js';

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
  | 'connection.reauth_required'
  | typeof PING_EVENT;

/** A CIBA ping (CIBA Core §10.2): delivered to the agent's endpoint by PingDispatcher, never to the app. */
export const PING_EVENT = 'ciba.ping';

/**
 * The transactional outbox: an event is written with the change that causes it, or not at all.
 * Capabilities of the human in the data (`approvalUrl`) are sealed at rest and opened only to
 * deliver (outbox-payload.ts).
 */
@Injectable()
export class OutboxService {
  constructor(
    private readonly repo: OutboxRepository,
    private readonly clock: Clock,
    private readonly cipher: Cipher,
  ) {}

  async add(m: EntityManager, appId: string, type: EventType, data: Record<string, unknown>): Promise<string> {
    const row = this.row(appId, type, data);
    await this.repo.insert(m, row);
    return row.id;
  }

  /**
   * A ping to a client's endpoint (CIBA ping mode) in the caller's transaction: POSTs `body` as
   * JSON with `Authorization: Bearer <bearer>` (both sealed at rest), retried, SSRF-guarded. The
   * row is the app's (tenancy) but is neither a webhook nor a stream event.
   */
  async addPing(m: EntityManager, appId: string, p: { endpoint: string; bearer: string; body: Record<string, unknown>; agentId: string; stepUpId: string }): Promise<string> {
    const row = this.row(appId, PING_EVENT, { agentId: p.agentId, stepUpId: p.stepUpId, endpoint: p.endpoint, pingBody: JSON.stringify(p.body), pingBearer: p.bearer });
    row.deliveryStatus = 'ping';
    await this.repo.insert(m, row);
    return row.id;
  }

  /** Several events in the caller's transaction, in one statement where the database allows (a batch of consumed tokens). */
  async addMany(m: EntityManager, events: { appId: string; type: EventType; data: Record<string, unknown> }[]): Promise<void> {
    await this.repo.insertMany(m, events.map((e) => this.row(e.appId, e.type, e.data)));
  }

  private row(appId: string, type: EventType, data: Record<string, unknown>): OutboxEntity {
    const id = newId('event');
    const createdAt = this.clock.now();
    return {
      id, appId, type, payload: { id, type, createdAt: new Date(createdAt).toISOString(), data: sealEventData(this.cipher, id, data) }, createdAt, deliveredAt: null,
      deliveryStatus: 'pending', attempts: 0, nextAttemptAt: createdAt, claimedUntil: null, claimedBy: null, lastError: null, streamSeq: null,
    };
  }

  /** The payload as delivered (webhook body, SSE data). Throws DecryptionError if a sealed field does not open. */
  deliverable(row: OutboxEntity): EventPayload {
    return openEventPayload(this.cipher, row.payload as unknown as EventPayload);
  }
}
