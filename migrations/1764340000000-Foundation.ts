import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { appId, id, int, ref, str, text, time } from './helpers.js';

export class Foundation1764340000000 implements MigrationInterface {
  name = 'Foundation1764340000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'apps',
        columns: [id(), appId(), str('name', 200), str('webhook_url', 2048, true), text('origins'), text('webhook_secret_enc'), time('created_at'), time('updated_at')],
      }),
    );
    await q.createTable(
      new Table({
        name: 'app_api_keys',
        columns: [id(), appId(), str('key_hash', 64), time('created_at'), time('revoked_at', true)],
        indices: [
          new TableIndex({ name: 'ux_app_api_keys_hash', columnNames: ['key_hash'], isUnique: true }),
          new TableIndex({ name: 'ix_app_api_keys_app', columnNames: ['app_id'] }),
        ],
      }),
    );
    await q.createTable(
      new Table({
        name: 'users',
        columns: [id(), appId(), str('external_id', 200), str('display_name', 200), str('email', 320, true), time('created_at')],
        indices: [new TableIndex({ name: 'ux_users_app_external', columnNames: ['app_id', 'external_id'], isUnique: true })],
      }),
    );
    await q.createTable(
      new Table({
        name: 'agents',
        columns: [
          id(), appId(), ref('user_id'), str('name', 200), str('model', 200), text('permission_boundaries'),
          int('token_ttl'), int('rate_limit_per_minute'), str('secret_hash', 64, true), text('jwks', true),
          str('status', 16), time('created_at'), time('updated_at'), time('revoked_at', true),
        ],
        indices: [new TableIndex({ name: 'ix_agents_app_user', columnNames: ['app_id', 'user_id'] })],
      }),
    );
    await q.createTable(
      new Table({
        name: 'signing_keys',
        columns: [
          { name: 'kid', type: 'varchar', length: '64', isPrimary: true }, appId(), str('alg', 16),
          text('public_jwk'), text('private_jwk_enc'), time('created_at'), time('retired_at', true), time('publish_until', true),
        ],
      }),
    );
    await q.createTable(
      new Table({
        name: 'revoked_tokens',
        columns: [{ name: 'jti', type: 'varchar', length: '64', isPrimary: true }, appId(), ref('agent_id'), time('expires_at'), time('revoked_at')],
        indices: [new TableIndex({ name: 'ix_revoked_tokens_expires', columnNames: ['expires_at'] })],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['revoked_tokens', 'signing_keys', 'agents', 'users', 'app_api_keys', 'apps']) await q.dropTable(t);
  }
}
