import { Table, TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { appId, ref, str, text, time } from './helpers.js';

/**
 * Issue 13, Transaction Authorization Challenge (draft-rosomakho-oauth-txn-challenge-00):
 * - an app's `resource` (the `iss` of its challenges and the `aud` of the tokens issued for them;
 *   unique across apps, since a challenge's app is found by it) and its `challenge_jwks`;
 * - `txn_challenges`: every accepted challenge by (app, `jti`), so a challenge starts at most one
 *   step-up, on every instance (the primary key decides), kept until the challenge expired (a
 *   challenge past its `exp` is refused whatever this table holds). What the challenge asked
 *   for (`txn`, `reason`, the token audience) lives with its step-up (step_ups.backchannel_data).
 */
export class TxnChallenge1764700000000 implements MigrationInterface {
  name = 'TxnChallenge1764700000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('apps', new TableColumn(str('resource', 512, true)));
    await q.addColumn('apps', new TableColumn(text('challenge_jwks', true)));
    await q.createIndex('apps', new TableIndex({ name: 'ux_apps_resource', columnNames: ['resource'], isUnique: true }));
    await q.createTable(
      new Table({
        name: 'txn_challenges',
        columns: [
          { ...appId(), isPrimary: true },
          { ...str('jti', 255), isPrimary: true },
          ref('agent_id'),
          ref('step_up_id', true),
          time('expires_at'),
          time('created_at'),
        ],
        indices: [
          new TableIndex({ name: 'ux_txn_challenges_step_up', columnNames: ['step_up_id'], isUnique: true }),
          new TableIndex({ name: 'ix_txn_challenges_expires', columnNames: ['expires_at'] }),
        ],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropTable('txn_challenges');
    await q.dropIndex('apps', 'ux_apps_resource');
    await q.dropColumn('apps', 'challenge_jwks');
    await q.dropColumn('apps', 'resource');
  }
}
