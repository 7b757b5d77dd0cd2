import type { EntityManager } from 'typeorm';
import type { RequestFields } from './request-context.js';

/** One state change or refusal for the audit trail; the request's context fills in the actor. */
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
  /** What changed, when the target alone does not say (e.g. boundaries before and after). */
  details?: Record<string, unknown> | null;
}

/**
 * Appending to the audit trail, as every feature module needs it. The audit module implements it
 * (and owns the chain and the queries); modules depend on this port, so the audit module's own
 * controller may use the app-key guard without a loop through the apps module.
 */
export abstract class AuditLog {
  /** Appends an event inside the caller's transaction. */
  abstract record(m: EntityManager, input: AuditInput): Promise<void>;
  /**
   * Appends several events inside the caller's transaction (one statement where the database
   * allows), each with the context of the request it belongs to (a batch serves many requests).
   */
  abstract recordMany(m: EntityManager, events: { input: AuditInput; context: RequestFields }[]): Promise<void>;
}
