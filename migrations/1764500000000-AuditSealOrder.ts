import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * The sealer reads each app's unsealed events in chain order (at, id), 500 at a time. With the
 * former partial index (seq, app_id) every batch sorted ALL of the app's unsealed events, so
 * catching up on a backlog cost its square. This partial index holds only unsealed rows, in
 * chain order per app: a batch is an ordered index range, and finding the apps with unsealed
 * events is one index probe per app (a skip scan in audit.repository.ts).
 */
export class AuditSealOrder1764500000000 implements MigrationInterface {
  name = 'AuditSealOrder1764500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createIndex('audit_events', new TableIndex({ name: 'ix_audit_events_unsealed_chain', columnNames: ['app_id', 'at', 'id'], where: 'seq IS NULL' }));
    await q.dropIndex('audit_events', 'ix_audit_events_unsealed');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.createIndex('audit_events', new TableIndex({ name: 'ix_audit_events_unsealed', columnNames: ['seq', 'app_id'], where: 'seq IS NULL' }));
    await q.dropIndex('audit_events', 'ix_audit_events_unsealed_chain');
  }
}
