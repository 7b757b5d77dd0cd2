import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Retention of `no_endpoint` outbox rows (events of an app without a webhookUrl): purged
 * RETENTION_OUTBOX_DAYS after they were written, found by their age through this partial index
 * (src/modules/ops/retention.service.ts), as delivered rows are through ix_outbox_delivered_at.
 */
export class OutboxNoEndpointRetention1764490000000 implements MigrationInterface {
  name = 'OutboxNoEndpointRetention1764490000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_no_endpoint_created', columnNames: ['created_at'], where: "delivery_status = 'no_endpoint'" }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('outbox', 'ix_outbox_no_endpoint_created');
  }
}
