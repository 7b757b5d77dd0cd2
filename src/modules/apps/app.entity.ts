import type { JSONWebKeySet } from 'jose';
import { Column, Entity, PrimaryColumn } from 'typeorm';
import { JsonColumn, TimeColumn } from '../../database/columns.js';

@Entity({ name: 'apps' })
export class AppEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  /** Equal to `id`: every table carries `app_id`. */
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 200 }) name: string;
  @Column({ type: 'varchar', length: 2048, name: 'webhook_url', nullable: true }) webhookUrl: string | null;
  @JsonColumn('origins') origins: string[];
  /** AES-256-GCM, AAD apps.webhook_secret_enc.<id>. */
  @Column({ type: 'text', name: 'webhook_secret_enc' }) webhookSecretEnc: string;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('updated_at') updatedAt: number;
  /** After a rotation the previous secret keeps signing (a second signature) until this time. */
  @Column({ type: 'text', name: 'webhook_secret_prev_enc', nullable: true }) webhookSecretPrevEnc: string | null;
  @TimeColumn('webhook_secret_prev_until', { nullable: true }) webhookSecretPrevUntil: number | null;
  /** Whether the agent's step-up response carries the human's approval URL (API.md v1.1; default false). */
  @Column({ type: 'boolean', name: 'approval_url_to_agent', default: false }) approvalUrlToAgent: boolean;
  /** (v1.1, TAC) The app's resource identifier: `iss` of its transaction challenges, `aud` of the tokens issued for them. Unique. */
  @Column({ type: 'varchar', length: 512, nullable: true }) resource: string | null;
  /** (v1.1, TAC) Public keys the app signs its transaction challenges with. */
  @JsonColumn('challenge_jwks', { nullable: true }) challengeJwks: JSONWebKeySet | null;
}

@Entity({ name: 'app_api_keys' })
export class AppApiKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  /** SHA-256 (base64url) of the key; the key itself is shown once. */
  @Column({ type: 'varchar', length: 64, name: 'key_hash' }) keyHash: string;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('revoked_at', { nullable: true }) revokedAt: number | null;
}
