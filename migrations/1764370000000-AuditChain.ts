import { Table, TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { str, time } from './helpers.js';

export class AuditChain1764370000000 implements MigrationInterface {
  name = 'AuditChain1764370000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumns('audit_events', [
      new TableColumn(time('seq', true)),
      new TableColumn(str('prev_hash', 64, true)),
      new TableColumn(str('hash', 64, true)),
    ]);
    await q.createIndex('audit_events', new TableIndex({ name: 'ux_audit_events_app_seq', columnNames: ['app_id', 'seq'], isUnique: true }));
    await q.createTable(
      new Table({
        name: 'audit_heads',
        columns: [{ name: 'app_id', type: 'varchar', length: '40', isPrimary: true }, time('last_seq'), str('last_hash', 64)],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropTable('audit_heads');
    await q.dropIndex('audit_events', 'ux_audit_events_app_seq');
    await q.dropColumns('audit_events', ['hash', 'prev_hash', 'seq']);
  }
}
