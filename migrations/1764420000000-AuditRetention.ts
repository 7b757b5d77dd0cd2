import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Indexes that make background work cost what it processes, not the size of the table:
 * - the audit sealer finds the apps with unsealed events through a partial index holding only
 *   those rows (a sealed row leaves it), so an idle pass reads an empty index however long the
 *   history is. `seq` leads although it is always null there: SQLite's planner, which has no
 *   statistics, then sees `seq IS NULL` as a search key rather than preferring a full scan of the
 *   narrower unique index (app_id, seq). (Sealing one app's events is already a search of that
 *   index by (app_id, seq IS NULL).)
 * - retention finds purgeable rows by their age: delivered outbox rows (partial, delivered only)
 *   and enrollment links (revoked tokens already have `ix_revoked_tokens_expires`).
 */
export class AuditRetention1764420000000 implements MigrationInterface {
  name = 'AuditRetention1764420000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createIndex('audit_events', new TableIndex({ name: 'ix_audit_events_unsealed', columnNames: ['seq', 'app_id'], where: 'seq IS NULL' }));
    await q.createIndex('outbox', new TableIndex({ name: 'ix_outbox_delivered_at', columnNames: ['delivered_at'], where: "delivery_status = 'delivered'" }));
    await q.createIndex('enrollment_links', new TableIndex({ name: 'ix_enrollment_links_expires', columnNames: ['expires_at'] }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('enrollment_links', 'ix_enrollment_links_expires');
    await q.dropIndex('outbox', 'ix_outbox_delivered_at');
    await q.dropIndex('audit_events', 'ix_audit_events_unsealed');
  }
}
