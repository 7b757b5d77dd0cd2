import { Column, Entity, PrimaryColumn } from 'typeorm';
import { JsonColumn, TimeColumn } from '../../database/columns.js';
import type { FactorType } from '../factors/factor.entity.js';

export type StepUpStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled';
export type GrantType = 'token' | 'sudo';
/** A backchannel a client polls with a handle instead of reading the step-up (backchannel.ts): CIBA, or a transaction challenge. */
export type BackchannelChannel = 'ciba' | 'txn';
/**
 * Who asked: the agent itself, or its app on its behalf (API.md v1.1), or the agent through a
 * backchannel (CIBA `auth_req_id`, TAC `transaction_authorization_id`); only the initiator reads it,
 * and a backchannel's step-up only through that backchannel.
 */
export type Initiator = 'agent' | 'app' | BackchannelChannel;

@Entity({ name: 'step_ups' })
export class StepUpEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'agent_id' }) agentId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  @Column({ type: 'varchar', length: 200 }) model: string;
  @Column({ type: 'varchar', length: 128, name: 'task_id', nullable: true }) taskId: string | null;
  @Column({ type: 'varchar', length: 64 }) action: string;
  @Column({ type: 'varchar', length: 512, nullable: true }) resource: string | null;
  @JsonColumn('details') details: Record<string, unknown>;
  @Column({ type: 'varchar', length: 64, name: 'details_hash' }) detailsHash: string;
  @Column({ type: 'varchar', length: 256, name: 'binding_message', nullable: true }) bindingMessage: string | null;
  @Column({ type: 'varchar', length: 16, name: 'binding_code' }) bindingCode: string;
  @JsonColumn('methods') methods: FactorType[];
  @Column({ type: 'varchar', length: 16, name: 'grant_type' }) grantType: GrantType;
  @JsonColumn('grant_scopes') grantScopes: string[];
  @Column({ type: 'integer', name: 'grant_duration' }) grantDuration: number;
  /** The DPoP key of the requesting token: a sudo token is bound to it too. */
  @Column({ type: 'varchar', length: 128, name: 'agent_jkt', nullable: true }) agentJkt: string | null;
  /** Scopes of the requesting token; a sudo token adds the granted ones to these. */
  @JsonColumn('agent_scopes') agentScopes: string[];
  @Column({ type: 'varchar', length: 8, default: 'agent' }) initiator: Initiator;
  /** The task of the worker token that asked (tsk_...): a sudo token it gets ends with that task. */
  @Column({ type: 'varchar', length: 40, name: 'worker_task_id', nullable: true }) workerTaskId: string | null;
  @Column({ type: 'varchar', length: 16 }) status: StepUpStatus;
  @Column({ type: 'varchar', length: 64, nullable: true }) reason: string | null;
  @Column({ type: 'varchar', length: 16, nullable: true }) method: FactorType | null;
  @JsonColumn('amr', { nullable: true }) amr: string[] | null;
  @Column({ type: 'varchar', length: 64, name: 'approval_token_hash' }) approvalTokenHash: string;
  /** The approval token, encrypted, so an idempotent replay can return the same approvalUrl. */
  @Column({ type: 'text', name: 'approval_token_enc' }) approvalTokenEnc: string;
  @Column({ type: 'varchar', length: 255, name: 'idempotency_key', nullable: true }) idempotencyKey: string | null;
  @Column({ type: 'varchar', length: 64, name: 'request_hash' }) requestHash: string;
  @Column({ type: 'varchar', length: 64, name: 'webauthn_nonce', nullable: true }) webauthnNonce: string | null;
  @TimeColumn('webauthn_nonce_expires_at', { nullable: true }) webauthnNonceExpiresAt: number | null;
  @Column({ type: 'integer', name: 'totp_failures' }) totpFailures: number;
  @Column({ type: 'varchar', length: 64, name: 'token_jti', nullable: true }) tokenJti: string | null;
  /** hashSecret of the MFA-proxy token as handed out: a token with this hash is the one issued (verification's hot path). */
  @Column({ type: 'varchar', length: 64, name: 'token_hash', nullable: true }) tokenHash: string | null;
  @TimeColumn('token_delivered_at', { nullable: true }) tokenDeliveredAt: number | null;
  @TimeColumn('token_expires_at', { nullable: true }) tokenExpiresAt: number | null;
  @TimeColumn('consumed_at', { nullable: true }) consumedAt: number | null;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('expires_at') expiresAt: number;
  @TimeColumn('decided_at', { nullable: true }) decidedAt: number | null;
  /** Backchannel step-ups (initiator ciba/txn): SHA-256 of the handle the client polls with (auth_req_id). */
  @Column({ type: 'varchar', length: 64, name: 'backchannel_hash', nullable: true }) backchannelHash?: string | null;
  /** The handle, encrypted (bound to the row): an identical request is answered with the same one, and a ping carries it. */
  @Column({ type: 'text', name: 'backchannel_enc', nullable: true }) backchannelEnc?: string | null;
  /** The last poll that was answered (slow_down is one conditional write on it). */
  @TimeColumn('backchannel_polled_at', { nullable: true }) backchannelPolledAt?: number | null;
  /** CIBA ping mode: the client_notification_token, encrypted (bound to the row): it is sent back, so not hashed. */
  @Column({ type: 'text', name: 'notification_token_enc', nullable: true }) notificationTokenEnc?: string | null;
  /** The channel's own request data (CIBA: openid, authorization_details; TAC: its fields). */
  @JsonColumn('backchannel_data', { nullable: true }) backchannelData?: Record<string, unknown> | null;
}
