import { Column, Entity, PrimaryColumn } from 'typeorm';
import { JsonColumn, TimeColumn } from '../../database/columns.js';

/**
 * One audit event. Appended with `seq` null; the sealer then assigns `seq` per app in order and
 * chains `hash = SHA-256(prevHash ‖ canonical event)`, so editing, deleting or reordering shows.
 */
@Entity({ name: 'audit_events' })
export class AuditEventEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @TimeColumn('at') at: number;
  @Column({ type: 'varchar', length: 128, name: 'request_id', nullable: true }) requestId: string | null;
  @Column({ type: 'varchar', length: 16, name: 'actor_type' }) actorType: string;
  @Column({ type: 'varchar', length: 64, name: 'actor_id', nullable: true }) actorId: string | null;
  @Column({ type: 'varchar', length: 40, name: 'user_id', nullable: true }) userId: string | null;
  @Column({ type: 'varchar', length: 40, name: 'agent_id', nullable: true }) agentId: string | null;
  @Column({ type: 'varchar', length: 200, nullable: true }) model: string | null;
  @Column({ type: 'varchar', length: 128, name: 'task_id', nullable: true }) taskId: string | null;
  @Column({ type: 'varchar', length: 64 }) type: string;
  @Column({ type: 'varchar', length: 64, nullable: true }) action: string | null;
  @Column({ type: 'varchar', length: 512, nullable: true }) resource: string | null;
  @Column({ type: 'varchar', length: 32 }) outcome: string;
  @Column({ type: 'integer', nullable: true }) status: number | null;
  @Column({ type: 'varchar', length: 64, nullable: true }) ip: string | null;
  /** What changed, for events that need more than their target (e.g. agent.updated: boundaries before and after). */
  @JsonColumn('details', { nullable: true }) details: Record<string, unknown> | null;
  @TimeColumn('seq', { nullable: true }) seq: number | null;
  @Column({ type: 'varchar', length: 64, name: 'prev_hash', nullable: true }) prevHash: string | null;
  @Column({ type: 'varchar', length: 64, nullable: true }) hash: string | null;
}

/** The head of one app's chain: the last sealed sequence number and hash. */
@Entity({ name: 'audit_heads' })
export class AuditHeadEntity {
  @PrimaryColumn({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @TimeColumn('last_seq') lastSeq: number;
  @Column({ type: 'varchar', length: 64, name: 'last_hash' }) lastHash: string;
}

/** When an agent last made a successful request (the dashboard's lastUsedAt, to the second), moved by the request events' flush. */
@Entity({ name: 'agent_activity' })
export class AgentActivityEntity {
  @PrimaryColumn({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @PrimaryColumn({ type: 'varchar', length: 40, name: 'agent_id' }) agentId: string;
  @TimeColumn('last_at') lastAt: number;
}
