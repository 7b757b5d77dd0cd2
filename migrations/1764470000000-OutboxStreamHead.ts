import { Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import { str, time } from './helpers.js';

/**
 * The last stream position handed out, kept apart from the outbox rows: retention deletes
 * delivered rows, and a head derived from MAX(stream_seq) would then go back and hand out
 * positions that open streams have already passed. One row (`id = 'outbox'`), written only by the
 * publisher that holds the turn (src/modules/events/outbox-publisher.ts).
 */
export class OutboxStreamHead1764470000000 implements MigrationInterface {
  name = 'OutboxStreamHead1764470000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(new Table({ name: 'outbox_stream_head', columns: [{ ...str('id', 40), isPrimary: true }, time('seq')] }));
    await q.query("INSERT INTO outbox_stream_head (id, seq) SELECT 'outbox', COALESCE(MAX(stream_seq), 0) FROM outbox");
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropTable('outbox_stream_head');
  }
}
