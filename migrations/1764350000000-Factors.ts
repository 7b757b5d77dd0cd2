import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { appId, id, ref, str, text, time } from './helpers.js';

export class Factors1764350000000 implements MigrationInterface {
  name = 'Factors1764350000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'factors',
        columns: [id(), appId(), ref('user_id'), str('type', 16), str('name', 100), str('status', 16), time('created_at'), time('last_used_at', true)],
        indices: [new TableIndex({ name: 'ix_factors_app_user', columnNames: ['app_id', 'user_id'] })],
      }),
    );
    await q.createTable(
      new Table({
        name: 'webauthn_credentials',
        columns: [
          id('factor_id'), appId(), ref('user_id'), str('credential_id', 1400), text('public_key'),
          time('counter'), text('transports'), str('device_type', 32), { name: 'backed_up', type: 'boolean' }, str('aaguid', 64),
        ],
        indices: [
          // A credential id is unique across the whole service, not only per app.
          new TableIndex({ name: 'ux_webauthn_credential_id', columnNames: ['credential_id'], isUnique: true }),
          new TableIndex({ name: 'ix_webauthn_app_user', columnNames: ['app_id', 'user_id'] }),
        ],
      }),
    );
    await q.createTable(
      new Table({
        name: 'totp_secrets',
        columns: [id('factor_id'), appId(), ref('user_id'), text('secret_enc'), time('last_used_step', true)],
      }),
    );
    await q.createTable(
      new Table({
        name: 'enrollment_links',
        columns: [
          id(), appId(), ref('user_id'), str('token_hash', 64), time('created_at'), time('expires_at'),
          str('webauthn_challenge', 128, true), time('webauthn_challenge_expires_at', true), str('webauthn_name', 100, true),
        ],
        indices: [
          new TableIndex({ name: 'ux_enrollment_links_token', columnNames: ['token_hash'], isUnique: true }),
          new TableIndex({ name: 'ix_enrollment_links_app_user', columnNames: ['app_id', 'user_id'] }),
        ],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['enrollment_links', 'totp_secrets', 'webauthn_credentials', 'factors']) await q.dropTable(t);
  }
}
