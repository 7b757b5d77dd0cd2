import { Column, Entity, PrimaryColumn } from 'typeorm';
import type { JWK } from 'jose';
import { JsonColumn, TimeColumn } from '../../database/columns.js';

/** A long-running task: a grant bound to one worker key, held in the vault. */
@Entity({ name: 'tasks' })
export class TaskEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'agent_id' }) agentId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  /** The agent's own task id (`task_id` of the tokens). */
  @Column({ type: 'varchar', length: 128, name: 'task_ref' }) taskRef: string;
  @Column({ type: 'varchar', length: 500, nullable: true }) description: string | null;
  @JsonColumn('scopes') scopes: string[];
  /** RFC 7638 thumbprint of the worker's public key: only proofs by this key draw tokens. */
  @Column({ type: 'varchar', length: 64, name: 'worker_jkt' }) workerJkt: string;
  @JsonColumn('worker_jwk') workerJwk: JWK;
  /** The task's long-lived grant secret, AES-256-GCM, never returned by any endpoint. */
  @Column({ type: 'text', name: 'credential_enc' }) credentialEnc: string;
  @Column({ type: 'varchar', length: 16 }) status: 'active' | 'ended';
  @Column({ type: 'varchar', length: 64, name: 'end_reason', nullable: true }) endReason: string | null;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('expires_at') expiresAt: number;
  @TimeColumn('ended_at', { nullable: true }) endedAt: number | null;
  /** The `jti` of the agent token that created the task: revoking that token ends the task. */
  @Column({ type: 'varchar', length: 64, name: 'creator_jti', nullable: true }) creatorJti: string | null;
}

@Entity({ name: 'connections' })
export class ConnectionEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 200 }) name: string;
  @Column({ type: 'varchar', length: 2048, name: 'token_endpoint' }) tokenEndpoint: string;
  @Column({ type: 'varchar', length: 512, name: 'client_id' }) clientId: string;
  @Column({ type: 'text', name: 'client_secret_enc' }) clientSecretEnc: string;
  @JsonColumn('scopes') scopes: string[];
  @TimeColumn('created_at') createdAt: number;
}

/** A user's upstream credential: the refresh token (and a cached access token), encrypted and row-bound. */
@Entity({ name: 'user_connections' })
export class UserConnectionEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  @Column({ type: 'varchar', length: 40, name: 'connection_id' }) connectionId: string;
  @Column({ type: 'text', name: 'refresh_token_enc' }) refreshTokenEnc: string;
  @Column({ type: 'text', name: 'access_token_enc', nullable: true }) accessTokenEnc: string | null;
  @TimeColumn('access_token_expires_at', { nullable: true }) accessTokenExpiresAt: number | null;
  @Column({ type: 'varchar', length: 1024, nullable: true }) scope: string | null;
  @Column({ type: 'varchar', length: 24 }) status: 'active' | 'reauth_required';
  @TimeColumn('updated_at') updatedAt: number;
}
