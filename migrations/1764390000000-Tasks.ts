import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { appId, id, ref, str, text, time } from './helpers.js';

export class Tasks1764390000000 implements MigrationInterface {
  name = 'Tasks1764390000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'tasks',
        columns: [
          id(), appId(), ref('agent_id'), ref('user_id'), str('task_ref', 128), str('description', 500, true), text('scopes'),
          str('worker_jkt', 64), text('worker_jwk'), text('credential_enc'), str('status', 16), str('end_reason', 64, true),
          time('created_at'), time('expires_at'), time('ended_at', true),
        ],
        indices: [new TableIndex({ name: 'ix_tasks_app_agent', columnNames: ['app_id', 'agent_id'] }), new TableIndex({ name: 'ix_tasks_app_user', columnNames: ['app_id', 'user_id'] })],
      }),
    );
    await q.createTable(
      new Table({
        name: 'connections',
        columns: [id(), appId(), str('name', 200), str('token_endpoint', 2048), str('client_id', 512), text('client_secret_enc'), text('scopes'), time('created_at')],
        indices: [new TableIndex({ name: 'ix_connections_app', columnNames: ['app_id'] })],
      }),
    );
    await q.createTable(
      new Table({
        name: 'user_connections',
        columns: [
          id(), appId(), ref('user_id'), ref('connection_id'), text('refresh_token_enc'), text('access_token_enc', true),
          time('access_token_expires_at', true), str('scope', 1024, true), str('status', 24), time('updated_at'),
        ],
        indices: [new TableIndex({ name: 'ux_user_connections', columnNames: ['app_id', 'user_id', 'connection_id'], isUnique: true })],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['user_connections', 'connections', 'tasks']) await q.dropTable(t);
  }
}
