import type { EntityManager } from 'typeorm';
import type { SqliteSession } from '../database/sqlite-serial.js';
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
 * Columns an event written by a PostgreSQL statement (AuditLog.insertSelectSql) takes from the
 * relation it is selected from, in this order, as AuditLog.carried gives them for each event:
 * its id and the context of the request it belongs to.
 */
export const AUDIT_CARRIED = ['audit_id', 'audit_request_id', 'audit_actor_type', 'audit_actor_id', 'audit_ip', 'audit_user_id', 'audit_agent_id', 'audit_model', 'audit_task_id'] as const;

/** An event per row of a relation: the fields of AuditInput that vary as SQL expressions over it, the others as values. */
export interface AuditSelect {
  appId: string;
  /** Milliseconds since the epoch (bigint). */
  at: string;
  userId: string;
  agentId: string;
  model: string;
  taskId: string;
  action: string;
  resource: string;
  type: string;
  outcome: AuditInput['outcome'];
  status: number;
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
  /** SQLite: recordMany inside the caller's synchronous transaction (onSqliteConnection), one prepared statement per event. */
  abstract recordManySqlite(db: SqliteSession, events: { input: AuditInput; context: RequestFields }[]): void;
  /**
   * PostgreSQL: an INSERT (for a WITH clause) of one event per row of `relation`, a relation of the
   * caller's statement that carries the AUDIT_CARRIED columns: the events are written by the
   * statement that makes the change, as recordMany would write them (context fallbacks, text cleaned).
   */
  abstract insertSelectSql(relation: string, event: AuditSelect): string;
  /** The AUDIT_CARRIED values of one event of insertSelectSql, written at `at` (the statement's time): a new event id, the request's context. */
  abstract carried(context: RequestFields, at: number): (string | null)[];
}
