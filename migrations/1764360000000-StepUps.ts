import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { appId, id, int, ref, str, text, time } from './helpers.js';

export class StepUps1764360000000 implements MigrationInterface {
  name = 'StepUps1764360000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'step_ups',
        columns: [
          id(), appId(), ref('agent_id'), ref('user_id'), str('model', 200), str('task_id', 128, true),
          str('action', 64), str('resource', 512, true), text('details'), str('details_hash', 64),
          str('binding_message', 256, true), str('binding_code', 16), text('methods'),
          str('grant_type', 16), text('grant_scopes'), int('grant_duration'), str('agent_jkt', 128, true), text('agent_scopes'),
          str('status', 16), str('reason', 64, true), str('method', 16, true), text('amr', true),
          str('approval_token_hash', 64), text('approval_token_enc'),
          str('idempotency_key', 255, true), str('request_hash', 64),
          str('webauthn_nonce', 64, true), time('webauthn_nonce_expires_at', true), int('totp_failures'),
          str('token_jti', 64, true), time('token_delivered_at', true), time('token_expires_at', true), time('consumed_at', true),
          time('created_at'), time('expires_at'), time('decided_at', true),
        ],
        indices: [
          new TableIndex({ name: 'ux_step_ups_approval_token', columnNames: ['approval_token_hash'], isUnique: true }),
          new TableIndex({ name: 'ux_step_ups_token_jti', columnNames: ['token_jti'], isUnique: true }),
          new TableIndex({ name: 'ux_step_ups_idempotency', columnNames: ['app_id', 'agent_id', 'idempotency_key'], isUnique: true }),
          new TableIndex({ name: 'ix_step_ups_user_status', columnNames: ['app_id', 'user_id', 'status'] }),
          new TableIndex({ name: 'ix_step_ups_status_expires', columnNames: ['status', 'expires_at'] }),
        ],
      }),
    );
    await q.createTable(
      new Table({
        name: 'audit_events',
        columns: [
          id(), appId(), time('at'), str('request_id', 128, true), str('actor_type', 16), str('actor_id', 64, true),
          str('user_id', 40, true), str('agent_id', 40, true), str('model', 200, true), str('task_id', 128, true),
          str('type', 64), str('action', 64, true), str('resource', 512, true), str('outcome', 32), int('status', true), str('ip', 64, true),
        ],
        indices: [new TableIndex({ name: 'ix_audit_events_app_at', columnNames: ['app_id', 'at'] })],
      }),
    );
    await q.createTable(
      new Table({
        name: 'outbox',
        columns: [id(), appId(), str('type', 64), text('payload'), time('created_at'), time('delivered_at', true)],
        indices: [new TableIndex({ name: 'ix_outbox_app_created', columnNames: ['app_id', 'created_at'] })],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['outbox', 'audit_events', 'step_ups']) await q.dropTable(t);
  }
}
