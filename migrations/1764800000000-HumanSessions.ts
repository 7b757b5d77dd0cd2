import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { appId, id, int, ref, str, time } from './helpers.js';

/**
 * Issue 15, the human's side:
 * - `sign_in_links`: app-issued, single-use sign-in links (token stored as SHA-256 only). `used_at`
 *   is set by one conditional write (single use); `attempts` counts failed proofs (per-link limit);
 *   the pending WebAuthn challenge serves one verify attempt.
 * - `login_challenges`: challenges of passkey sign-in without a link (discoverable credentials),
 *   stored as SHA-256, single use (deleted by the verify that takes them), short-lived. No app yet:
 *   the credential names it. Their number is bounded by a per-source-IP rate limit.
 * - `human_sessions`: dashboard sessions (cookie value stored as SHA-256), with the last-seen time
 *   (idle limit), the absolute end, and the last factor proof (re-authentication window).
 * - Two indexes on `audit_events` for the dashboard: a user's activity (newest first) and an agent's
 *   last use.
 */
export class HumanSessions1764800000000 implements MigrationInterface {
  name = 'HumanSessions1764800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'sign_in_links',
        columns: [
          id(), appId(), ref('user_id'), str('token_hash', 64), time('created_at'), time('expires_at'), time('used_at', true),
          { ...int('attempts'), default: 0 }, str('webauthn_challenge', 128, true), time('webauthn_challenge_expires_at', true),
        ],
        indices: [
          new TableIndex({ name: 'ux_sign_in_links_token', columnNames: ['token_hash'], isUnique: true }),
          new TableIndex({ name: 'ix_sign_in_links_app_user', columnNames: ['app_id', 'user_id'] }),
          new TableIndex({ name: 'ix_sign_in_links_expires', columnNames: ['expires_at'] }),
        ],
      }),
    );
    await q.createTable(
      new Table({
        name: 'login_challenges',
        columns: [{ ...str('challenge_hash', 64), isPrimary: true }, str('ip', 64, true), time('created_at'), time('expires_at')],
        indices: [new TableIndex({ name: 'ix_login_challenges_expires', columnNames: ['expires_at'] })],
      }),
    );
    await q.createTable(
      new Table({
        name: 'human_sessions',
        columns: [
          id(), appId(), ref('user_id'), str('token_hash', 64), time('created_at'), time('last_seen_at'), time('expires_at'),
          time('factor_proved_at', true), str('method', 16),
        ],
        indices: [
          new TableIndex({ name: 'ux_human_sessions_token', columnNames: ['token_hash'], isUnique: true }),
          new TableIndex({ name: 'ix_human_sessions_app_user', columnNames: ['app_id', 'user_id'] }),
          new TableIndex({ name: 'ix_human_sessions_expires', columnNames: ['expires_at'] }),
        ],
      }),
    );
    await q.createIndex('audit_events', new TableIndex({ name: 'ix_audit_events_app_user_seq', columnNames: ['app_id', 'user_id', 'seq'] }));
    await q.createIndex('audit_events', new TableIndex({ name: 'ix_audit_events_app_agent_at', columnNames: ['app_id', 'agent_id', 'at'] }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('audit_events', 'ix_audit_events_app_agent_at');
    await q.dropIndex('audit_events', 'ix_audit_events_app_user_seq');
    for (const t of ['human_sessions', 'login_challenges', 'sign_in_links']) await q.dropTable(t);
  }
}
