import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { ref, time } from './helpers.js';

/**
 * `agent_activity`: when each agent last made a successful request (the dashboard's
 * `lastUsedAt`), one row per agent, moved by the audit trail's request flush. It replaces the
 * index `ix_audit_events_app_agent_at`, which every audit row wrote into at its agent's place:
 * with many agents, each flush dirtied a page per agent (on SQLite 18 of the 31 µs an audit row
 * cost, most of it writing those pages to the WAL). The table starts from the audit trail (each
 * agent's latest event as actor: every state change of an agent comes with its request's event).
 * `ix_audit_events_app_at` goes too: no query reads events by time any more (lists go by `seq`,
 * the sealer by the partial index of unsealed rows), and every row paid for it.
 */
export class AgentActivity1765100000000 implements MigrationInterface {
  name = 'AgentActivity1765100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'agent_activity',
        columns: [{ ...ref('app_id'), isPrimary: true }, { ...ref('agent_id'), isPrimary: true }, time('last_at')],
      }),
    );
    await q.query(
      `INSERT INTO agent_activity (app_id, agent_id, last_at)
       SELECT app_id, agent_id, MAX(at) FROM audit_events WHERE actor_type = 'agent' AND agent_id IS NOT NULL GROUP BY app_id, agent_id`,
    );
    await q.dropIndex('audit_events', 'ix_audit_events_app_agent_at');
    await q.dropIndex('audit_events', 'ix_audit_events_app_at');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.createIndex('audit_events', new TableIndex({ name: 'ix_audit_events_app_at', columnNames: ['app_id', 'at'] }));
    await q.createIndex('audit_events', new TableIndex({ name: 'ix_audit_events_app_agent_at', columnNames: ['app_id', 'agent_id', 'at'] }));
    await q.dropTable('agent_activity');
  }
}
