import { TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { ref, str } from './helpers.js';

/**
 * Issue 10 (authority, exact binding): the app's `approvalUrlToAgent` switch, who initiated a
 * step-up (agent or app) and the worker task behind it, and connection names unique per app
 * (a connection is reached through the scope `connection:<name>`).
 */
export class Authority1764400000000 implements MigrationInterface {
  name = 'Authority1764400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('apps', new TableColumn({ name: 'approval_url_to_agent', type: 'boolean', isNullable: false, default: false }));
    await q.addColumn('step_ups', new TableColumn({ ...str('initiator', 8), default: "'agent'" }));
    await q.addColumn('step_ups', new TableColumn(ref('worker_task_id', true)));
    // An app's Idempotency-Key and its agent's own are separate namespaces.
    await q.dropIndex('step_ups', 'ux_step_ups_idempotency');
    await q.createIndex('step_ups', new TableIndex({ name: 'ux_step_ups_idempotency', columnNames: ['app_id', 'agent_id', 'initiator', 'idempotency_key'], isUnique: true }));
    await q.createIndex('connections', new TableIndex({ name: 'ux_connections_app_name', columnNames: ['app_id', 'name'], isUnique: true }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('connections', 'ux_connections_app_name');
    await q.dropIndex('step_ups', 'ux_step_ups_idempotency');
    await q.createIndex('step_ups', new TableIndex({ name: 'ux_step_ups_idempotency', columnNames: ['app_id', 'agent_id', 'idempotency_key'], isUnique: true }));
    await q.dropColumn('step_ups', 'worker_task_id');
    await q.dropColumn('step_ups', 'initiator');
    await q.dropColumn('apps', 'approval_url_to_agent');
  }
}
