import { TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { int, str, text, time } from './helpers.js';

export class Webhooks1764380000000 implements MigrationInterface {
  name = 'Webhooks1764380000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumns('outbox', [
      new TableColumn({ ...str('delivery_status', 16), default: "'pending'" }),
      new TableColumn({ ...int('attempts'), default: 0 }),
      new TableColumn(time('next_attempt_at', true)),
      new TableColumn(time('claimed_until', true)),
      new TableColumn(str('claimed_by', 64, true)),
      new TableColumn(text('last_error', true)),
    ]);
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_due', columnNames: ['delivery_status', 'next_attempt_at'] }));
    await q.addColumns('apps', [new TableColumn(text('webhook_secret_prev_enc', true)), new TableColumn(time('webhook_secret_prev_until', true))]);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropColumns('apps', ['webhook_secret_prev_until', 'webhook_secret_prev_enc']);
    await q.dropIndex('outbox', 'ix_outbox_due');
    await q.dropColumns('outbox', ['last_error', 'claimed_by', 'claimed_until', 'next_attempt_at', 'attempts', 'delivery_status']);
  }
}
