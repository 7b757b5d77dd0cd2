import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/** The indexes that order sealed audit events and published outbox events, by the column that is NULL until then. */
const SEQUENCED = [
  { table: 'audit_events', name: 'ux_audit_events_app_seq', columnNames: ['app_id', 'seq'], isUnique: true, column: 'seq' },
  { table: 'audit_events', name: 'ix_audit_events_app_user_seq', columnNames: ['app_id', 'user_id', 'seq'], isUnique: false, column: 'seq' },
  { table: 'outbox', name: 'ux_outbox_stream_seq', columnNames: ['stream_seq'], isUnique: true, column: 'stream_seq' },
  { table: 'outbox', name: 'ix_outbox_app_stream_seq', columnNames: ['app_id', 'stream_seq'], isUnique: false, column: 'stream_seq' },
] as const;

/**
 * Fewer index writes per verification on the hot path (PostgreSQL WAL of a verify round, read with
 * pg_waldump: 24 btree leaf inserts per verification).
 *
 * - Audit events are written unsealed (`seq` NULL) and sealed later; outbox events unpublished
 *   (`stream_seq` NULL) and published later. The indexes above are read only for sealed or published
 *   rows (every reader names `seq > x`, `seq < x` or `seq IS NOT NULL`, which imply the predicate), yet
 *   every row written unnumbered entered them twice: NULL at insert, then its number when sealed or
 *   published. Partial, a row enters them once. A verification writes one unsealed audit event (its
 *   consume; its request's event is written sealed) and one unpublished outbox event: four fewer
 *   index entries. Uniqueness of the numbers is unchanged (NULLs were never constrained).
 * - ix_outbox_due (delivery_status, next_attempt_at) held every outbox row, and took an entry at
 *   the event's insert and at each later write of it that is not HOT (its publication, its
 *   delivery). No statement reads it any more: each kind of due row has its own partial index
 *   (ix_outbox_pending_app, ix_outbox_ping_due, ix_outbox_push_due, which SQLite is told to use),
 *   and PostgreSQL's planner was seen taking it for the due-apps probe and reading 25,000 rows a
 *   probe (OutboxRepository.appsWithDue). Dropped: two fewer index entries per event.
 * - `step_ups` keeps half of each page free (it kept a fifth: 1765000000000). A consume sets only
 *   `consumed_at`, in no index: with room on its page it is a HOT update (no index entry). A batch
 *   consumes tokens that lie together (they were approved together), and a page of ~570-byte rows
 *   had room for two new versions: a third of the consumes in a verify round were HOT (3,632 of
 *   10,650); at half, 88 % (10,657 of 12,136). Pages written from now on keep the room.
 *
 * On PostgreSQL (migrations run in one transaction) the new indexes are built beside the old ones:
 * the builds hold writes to audit_events and outbox (reads go on), and the old indexes are dropped
 * last, holding every access to the tables from then until the commit (renames, no build). Dropped
 * first, as a review measured, they closed the tables to reads too for the whole migration (1.5 s at
 * ~600,000 rows per table). A build that holds no writes (CREATE INDEX CONCURRENTLY) cannot run
 * inside a transaction.
 */
export class VerifyWriteIndexes1765600000000 implements MigrationInterface {
  name = 'VerifyWriteIndexes1765600000000';

  async up(q: QueryRunner): Promise<void> {
    if (q.connection.options.type === 'postgres') {
      // Built beside the old ones, which are dropped last: the builds hold writes (not reads) to
      // the tables; the drops hold every access, from the first drop until the migration commits.
      for (const { table, name, columnNames, isUnique, column } of SEQUENCED) {
        await q.createIndex(table, new TableIndex({ name: `${name}_new`, columnNames: [...columnNames], isUnique, where: `${column} IS NOT NULL` }));
      }
      for (const { table, name } of SEQUENCED) await q.dropIndex(table, name);
      await q.dropIndex('outbox', 'ix_outbox_due');
      for (const { name } of SEQUENCED) await q.query(`ALTER INDEX "${name}_new" RENAME TO "${name}"`);
      await q.query('ALTER TABLE step_ups SET (fillfactor = 50)');
      return;
    }
    // SQLite (no index renames; a migration holds the one database anyway).
    for (const { table, name, columnNames, isUnique, column } of SEQUENCED) {
      await q.dropIndex(table, name);
      await q.createIndex(table, new TableIndex({ name, columnNames: [...columnNames], isUnique, where: `${column} IS NOT NULL` }));
    }
    await q.dropIndex('outbox', 'ix_outbox_due');
  }

  async down(q: QueryRunner): Promise<void> {
    if (q.connection.options.type === 'postgres') await q.query('ALTER TABLE step_ups SET (fillfactor = 80)');
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_due', columnNames: ['delivery_status', 'next_attempt_at'] }));
    for (const { table, name, columnNames, isUnique } of SEQUENCED) {
      await q.dropIndex(table, name);
      await q.createIndex(table, new TableIndex({ name, columnNames: [...columnNames], isUnique }));
    }
  }
}
