import { Column, Entity, PrimaryColumn } from 'typeorm';
import type { JSONWebKeySet } from 'jose';
import { JsonColumn, TimeColumn } from '../../database/columns.js';

export type AgentStatus = 'active' | 'suspended' | 'revoked';

@Entity({ name: 'agents' })
export class AgentEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  @Column({ type: 'varchar', length: 200 }) name: string;
  @Column({ type: 'varchar', length: 200 }) model: string;
  @JsonColumn('permission_boundaries') permissionBoundaries: string[];
  @Column({ type: 'integer', name: 'token_ttl' }) tokenTtl: number;
  @Column({ type: 'integer', name: 'rate_limit_per_minute' }) rateLimitPerMinute: number;
  /** SHA-256 of the client secret (null when the agent authenticates with private_key_jwt). */
  @Column({ type: 'varchar', length: 64, name: 'secret_hash', nullable: true }) secretHash: string | null;
  @JsonColumn('jwks', { nullable: true }) jwks: JSONWebKeySet | null;
  @Column({ type: 'varchar', length: 16 }) status: AgentStatus;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('updated_at') updatedAt: number;
  @TimeColumn('revoked_at', { nullable: true }) revokedAt: number | null;
  /** CIBA ping mode (CIBA Core §10.2): where a decided request's `{ auth_req_id }` is POSTed (https, or loopback when WEBHOOK_ALLOW_PRIVATE). */
  @Column({ type: 'varchar', length: 2048, name: 'ciba_notification_endpoint', nullable: true }) cibaNotificationEndpoint: string | null;
}
