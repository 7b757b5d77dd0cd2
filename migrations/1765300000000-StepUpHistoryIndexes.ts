import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Reads of `step_ups` made on every request of their kind that read a whole history of step-ups
 * (an agent's or a user's; measured at 50,000 step-ups of one agent and user). Each now reads an
 * index range as long as its answer:
 * - the fatigue check of every step-up creation (StepUpsRepository.humanDenials: the agent's human
 *   denials of the last day) searched ux_step_ups_idempotency by (app, agent) and sorted what it
 *   found on SQLite; PostgreSQL read every denial of every app through ix_step_ups_status_expires.
 *   ix_step_ups_agent_denied holds denials only, by agent and time.
 * - a user's active sudo grants (approvedSudoOfUser: decided in the last 15 minutes) read every
 *   approval the user ever gave (PostgreSQL: a sequential scan). ix_step_ups_user_sudo holds
 *   approved sudo step-ups only, by user and time.
 * - a user's step-ups newest first (ofUser) sorted the user's whole history (PostgreSQL: a
 *   sequential scan): ix_step_ups_user_created is that order. Its pending ones only: ix_step_ups_user_status
 *   gains created_at (the pending count of the step-up cap reads the same prefix as before), so
 *   SQLite does not walk the whole history in created_at order to find the few pending.
 */
export class StepUpHistoryIndexes1765300000000 implements MigrationInterface {
  name = 'StepUpHistoryIndexes1765300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createIndex('step_ups', new TableIndex({ name: 'ix_step_ups_agent_denied', columnNames: ['app_id', 'agent_id', 'decided_at'], where: "status = 'denied'" }));
    await q.createIndex('step_ups', new TableIndex({ name: 'ix_step_ups_user_sudo', columnNames: ['app_id', 'user_id', 'decided_at'], where: "status = 'approved' AND grant_type = 'sudo'" }));
    await q.createIndex('step_ups', new TableIndex({ name: 'ix_step_ups_user_created', columnNames: ['app_id', 'user_id', 'created_at'] }));
    await q.createIndex('step_ups', new TableIndex({ name: 'ix_step_ups_user_status_created', columnNames: ['app_id', 'user_id', 'status', 'created_at'] }));
    await q.dropIndex('step_ups', 'ix_step_ups_user_status');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.createIndex('step_ups', new TableIndex({ name: 'ix_step_ups_user_status', columnNames: ['app_id', 'user_id', 'status'] }));
    await q.dropIndex('step_ups', 'ix_step_ups_user_status_created');
    await q.dropIndex('step_ups', 'ix_step_ups_user_created');
    await q.dropIndex('step_ups', 'ix_step_ups_user_sudo');
    await q.dropIndex('step_ups', 'ix_step_ups_agent_denied');
  }
}
