import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * GET /v1/webhook-deliveries lists an app's events newest first, in (created_at, id) order, and
 * pages by that pair. ix_outbox_app_created (app_id, created_at) left the id out: every page sorted
 * its rows, and the cursor could only say "older than", so a page that ended inside a millisecond
 * (a consume batch writes its events at one instant) lost the rest of that millisecond. The list
 * now reads ix_outbox_app_created_id in order. `?status=failed` read the app's whole history to
 * find a few failed events (most are delivered); failed rows now have an index of their own,
 * written only when a delivery gives up (nothing on the hot paths). The other statuses are either
 * the bulk of an app's rows (delivered, no_endpoint) or its backlog (pending).
 *
 * On PostgreSQL the builds hold writes to outbox until the migration commits (as every index
 * migration here does: migrations run in one transaction): 1.75 s at 1,000,000 outbox rows.
 */
export class OutboxDeliveriesOrder1765500000000 implements MigrationInterface {
  name = 'OutboxDeliveriesOrder1765500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_app_created_id', columnNames: ['app_id', 'created_at', 'id'] }));
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_app_failed', columnNames: ['app_id', 'created_at', 'id'], where: "delivery_status = 'failed'" }));
    await q.dropIndex('outbox', 'ix_outbox_app_created');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_app_created', columnNames: ['app_id', 'created_at'] }));
    await q.dropIndex('outbox', 'ix_outbox_app_failed');
    await q.dropIndex('outbox', 'ix_outbox_app_created_id');
  }
}
