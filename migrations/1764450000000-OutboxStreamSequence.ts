import { TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { time } from './helpers.js';

/**
 * The event stream's delivery order: `stream_seq`, assigned after commit by one publisher at a
 * time (src/modules/events/outbox-publisher.ts), so streams page by a sequence that only grows in
 * commit-visible order. Also the indexes that keep background work proportional to new rows:
 * unpublished rows, and pending deliveries per app (fair claiming).
 */
export class OutboxStreamSequence1764450000000 implements MigrationInterface {
  name = 'OutboxStreamSequence1764450000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('outbox', new TableColumn(time('stream_seq', true)));
    // Events written before this migration keep the order the stream used for them: (created_at, id).
    await q.query('UPDATE outbox SET stream_seq = s.n FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n FROM outbox) AS s WHERE outbox.id = s.id');
    await q.createIndex('outbox', new TableIndex({ name: 'ux_outbox_stream_seq', columnNames: ['stream_seq'], isUnique: true }));
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_app_stream_seq', columnNames: ['app_id', 'stream_seq'] }));
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_unpublished', columnNames: ['created_at', 'id'], where: 'stream_seq IS NULL' }));
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_pending_app', columnNames: ['app_id', 'next_attempt_at', 'id'], where: "delivery_status = 'pending'" }));
  }

  async down(q: QueryRunner): Promise<void> {
    for (const name of ['ix_outbox_pending_app', 'ix_outbox_unpublished', 'ix_outbox_app_stream_seq', 'ux_outbox_stream_seq']) await q.dropIndex('outbox', name);
    await q.dropColumn('outbox', 'stream_seq');
  }
}
