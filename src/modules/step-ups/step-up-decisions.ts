import { Injectable, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import type { EntityManager } from 'typeorm';
import { Clock } from '../../common/clock.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { AuditLog } from '../../common/audit-log.js';
import { OutboxService } from '../events/outbox.service.js';
import type { StepUpEntity, StepUpStatus } from './step-up.entity.js';
import { StepUpsRepository } from './step-ups.repository.js';

const CHANGED = 'step-up.changed';

export function eventData(s: Pick<StepUpEntity, 'id' | 'initiator' | 'agentId' | 'userId' | 'model' | 'taskId' | 'action' | 'resource' | 'detailsHash'>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  // A backchannel's step-up is the agent's own request: actorType agent, and the channel named.
  const actor = s.initiator === 'app' || s.initiator === 'agent' ? { actorType: s.initiator } : { actorType: 'agent', channel: s.initiator };
  return { stepUpId: s.id, ...actor, agentId: s.agentId, userId: s.userId, model: s.model, taskId: s.taskId, action: s.action, resource: s.resource, detailsHash: s.detailsHash, ...extra };
}

/**
 * eventData of the rows of `relation` (step_ups columns), as a PostgreSQL json expression: for an
 * event written by the statement that changes the step-up (TokenConsumer). The same keys in the
 * same order as eventData (a test holds them equal for every initiator).
 */
export function eventDataSql(relation: string): string {
  const fields = (actor: string) =>
    `json_build_object('stepUpId', ${relation}.id, ${actor}, 'agentId', ${relation}.agent_id, 'userId', ${relation}.user_id, 'model', ${relation}.model, ` +
    `'taskId', ${relation}.task_id, 'action', ${relation}.action, 'resource', ${relation}.resource, 'detailsHash', ${relation}.details_hash)`;
  return `CASE WHEN ${relation}.initiator IN ('app', 'agent') THEN ${fields(`'actorType', ${relation}.initiator`)} ELSE ${fields(`'actorType', 'agent', 'channel', ${relation}.initiator`)} END`;
}

/**
 * Every decision of a step-up: one conditional write, and — only for its winner — the audit
 * event and the outbox event in the same transaction; then every waiter (on every instance) wakes.
 */
@Injectable()
export class StepUpDecisions implements OnModuleInit, BeforeApplicationShutdown {
  private readonly waiters = new EventEmitter().setMaxListeners(0);
  /** Run in the deciding transaction after its events (backchannel.ts: CIBA pings). */
  private readonly decidedIn: Array<(m: EntityManager, s: StepUpEntity, to: Exclude<StepUpStatus, 'pending'>) => Promise<void>> = [];
  private closing = false;

  constructor(
    private readonly repo: StepUpsRepository,
    private readonly audit: AuditLog,
    private readonly outbox: OutboxService,
    private readonly pubsub: PubSub,
    private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    this.pubsub.subscribe(CHANGED, (m) => this.waiters.emit(String(m.id)));
  }

  /** Graceful shutdown: long-polls answer now with the current status instead of holding the close. */
  beforeApplicationShutdown(): void {
    this.closing = true;
    this.waiters.emit('*shutdown*');
  }

  /** Inside the caller's transaction. True when this call decided. */
  async decideIn(m: EntityManager, s: StepUpEntity, to: Exclude<StepUpStatus, 'pending'>, fields: Partial<StepUpEntity> = {}): Promise<boolean> {
    const now = this.clock.now();
    if (!(await this.repo.decide(m, s, to, now, fields))) return false;
    await this.audit.record(m, {
      appId: s.appId, type: `step_up.${to}`, outcome: to === 'approved' ? 'success' : 'denied',
      userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId, action: s.action, resource: s.resource,
    });
    await this.outbox.add(m, s.appId, `step_up.${to}`, eventData(s, { status: to, ...(fields.reason ? { reason: fields.reason } : {}), ...(fields.method ? { method: fields.method } : {}) }));
    for (const listener of this.decidedIn) await listener(m, s, to);
    return true;
  }

  /** `listener` runs in the transaction of every decision, for its winner only (a failure rolls the decision back). */
  onDecidedIn(listener: (m: EntityManager, s: StepUpEntity, to: Exclude<StepUpStatus, 'pending'>) => Promise<void>): void {
    this.decidedIn.push(listener);
  }

  async decide(s: StepUpEntity, to: Exclude<StepUpStatus, 'pending'>, fields: Partial<StepUpEntity> = {}): Promise<boolean> {
    const decided = await this.repo.ds.transaction((m) => this.decideIn(m, s, to, fields));
    if (decided) await this.changed(s.id);
    return decided;
  }

  /** Wakes long-polls and live pages of this step-up, on every instance. */
  async changed(id: string): Promise<void> {
    await this.pubsub.publish(CHANGED, { id });
  }

  /** Resolves when the step-up changes or after `ms`. */
  waitForChange(id: string, ms: number): Promise<void> {
    return this.watchChange(id, ms).changed;
  }

  /**
   * Starts listening for a change of the step-up now: `changed` resolves at the change, after `ms`,
   * or at shutdown; `stop` ends the wait early. Listen first, then read the state: a change that
   * lands between the read and the wait is not missed (it would hold a long-poll for its whole time).
   */
  watchChange(id: string, ms: number): { changed: Promise<void>; stop(): void } {
    if (this.closing) return { changed: Promise.resolve(), stop: () => undefined };
    let done!: () => void;
    const changed = new Promise<void>((resolve) => {
      done = () => {
        clearTimeout(timer);
        this.waiters.off(id, done);
        this.waiters.off('*shutdown*', done);
        resolve();
      };
    });
    const timer = setTimeout(done, ms);
    this.waiters.once(id, done);
    this.waiters.once('*shutdown*', done);
    return { changed, stop: done };
  }

  /** Applies expiry lazily: a pending step-up past its time becomes `expired` (with its events). */
  async expireIfDue(s: StepUpEntity): Promise<StepUpEntity> {
    if (s.status !== 'pending' || s.expiresAt > this.clock.now()) return s;
    await this.decide(s, 'expired', { reason: 'expired' });
    return (await this.repo.find(s.appId, s.id)) ?? s;
  }
}
