import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * PostgreSQL: `step_ups` pages keep a fifth of their space free. Consuming a token sets only
 * `consumed_at`, which no index covers, so with room on its page the new row version is a HOT
 * update: no entry in any of the table's seven indexes, far less WAL, on the verify hot path.
 * On full pages (the default fillfactor 100) every consume wrote seven index entries. Pages
 * written from now on keep the room; SQLite has no such setting.
 */
export class StepUpsFillfactor1765000000000 implements MigrationInterface {
  name = 'StepUpsFillfactor1765000000000';

  async up(q: QueryRunner): Promise<void> {
    if (q.connection.options.type === 'postgres') await q.query('ALTER TABLE step_ups SET (fillfactor = 80)');
  }

  async down(q: QueryRunner): Promise<void> {
    if (q.connection.options.type === 'postgres') await q.query('ALTER TABLE step_ups RESET (fillfactor)');
  }
}
