import { createHash } from 'node:crypto';
import { canonicalJson } from '../../common/canonical-json.js';
import type { AuditEventEntity } from './audit-event.entity.js';

export const GENESIS_HASH = '0'.repeat(64);

/** The fields a hash covers: everything of the event, its place (seq) and its predecessor. */
export function chainHash(prevHash: string, e: AuditEventEntity, seq: number): string {
  const body = canonicalJson({
    id: e.id, appId: e.appId, seq, at: e.at, requestId: e.requestId, actorType: e.actorType, actorId: e.actorId,
    userId: e.userId, agentId: e.agentId, model: e.model, taskId: e.taskId, type: e.type, action: e.action,
    resource: e.resource, outcome: e.outcome, status: e.status, ip: e.ip,
    // Covered when present; events without details hash exactly as before the column existed.
    ...(e.details !== null && e.details !== undefined ? { details: e.details } : {}),
  });
  return createHash('sha256').update(prevHash).update('\n').update(body).digest('hex');
}

export interface ChainCheck {
  valid: boolean;
  count: number;
  headHash: string;
  firstBadSeq?: number;
}

/**
 * Walks sealed events in seq order: seq must count up from 1, each prevHash must be the previous
 * hash, and each hash must recompute. Returns the first sequence number where that fails.
 */
export class ChainWalker {
  private expectedSeq = 1;
  private prev = GENESIS_HASH;
  private bad: number | undefined;

  add(e: AuditEventEntity): void {
    if (this.bad !== undefined) return;
    if (e.seq !== this.expectedSeq || e.prevHash !== this.prev || e.hash !== chainHash(this.prev, e, this.expectedSeq)) {
      this.bad = this.expectedSeq;
      return;
    }
    this.prev = e.hash!;
    this.expectedSeq++;
  }

  /** Compares the walk with the stored head (a deleted tail shows here). */
  finish(head: { lastSeq: number; lastHash: string } | null): ChainCheck {
    const count = this.expectedSeq - 1;
    if (this.bad === undefined && head && (head.lastSeq !== count || head.lastHash !== this.prev)) this.bad = count + 1;
    return { valid: this.bad === undefined, count, headHash: this.prev, ...(this.bad !== undefined ? { firstBadSeq: this.bad } : {}) };
  }
}
