import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';
import { text } from './helpers.js';

/** Audit events that need more than their target (agent.updated: boundaries before and after) carry `details`. */
export class AuditDetails1764440000000 implements MigrationInterface {
  name = 'AuditDetails1764440000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('audit_events', new TableColumn(text('details', true)));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropColumn('audit_events', 'details');
  }
}
