import { hash } from 'node:crypto';
import { canonicalJson } from '../../common/canonical-json.js';
import type { AuditEventEntity } from './audit-event.entity.js';

export const GENESIS_HASH = '0'.repeat(64);

/** The fields a hash covers: everything of the event, its place (seq) and its predecessor. */
export function chainHash(prevHash: string, e: AuditEventEntity, seq: number): string {
  // One-shot: less than half of createHash().update()…digest()'s cost for a row (0.6 against 1.4 µs), the same bytes.
  return hash('sha256', `${prevHash}\n${chainBody(e, seq)}`, 'hex');
}

/**
 * RFC 8785 canonical JSON of the covered fields. Without details every value is a string, a number
 * or null, so JSON.stringify of the members in sorted key order is that canonical form (same
 * escaping, same numbers, no member for undefined), at a fifth of the cost of the generic
 * canonicalizer; details (any JSON) take the generic path. (The generic one refuses a lone
 * surrogate; this one writes it escaped, so such an event is sealed instead of stopping the sealer.)
 */
export function chainBody(e: AuditEventEntity, seq: number): string {
  if (e.details !== null && e.details !== undefined) {
    // Covered when present; events without details hash exactly as before the column existed.
    return canonicalJson({ ...coveredFields(e, seq), details: e.details });
  }
  // Keys in UTF-16 code-unit order (RFC 8785 §3.2.3).
  return JSON.stringify({
    action: e.action, actorId: e.actorId, actorType: e.actorType, agentId: e.agentId, appId: e.appId, at: e.at, id: e.id, ip: e.ip,
    model: e.model, outcome: e.outcome, requestId: e.requestId, resource: e.resource, seq, status: e.status, taskId: e.taskId, type: e.type, userId: e.userId,
  });
}

function coveredFields(e: AuditEventEntity, seq: number): Record<string, unknown> {
  return {
    id: e.id, appId: e.appId, seq, at: e.at, requestId: e.requestId, actorType: e.actorType, actorId: e.actorId,
    userId: e.userId, agentId: e.agentId, model: e.model, taskId: e.taskId, type: e.type, action: e.action,
    resource: e.resource, outcome: e.outcome, status: e.status, ip: e.ip,
  };
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
