import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';
import { str } from './helpers.js';

/**
 * `login_challenges.purpose` (security review L1): 'login' (passkey sign-in without a link) or
 * 'register' (a passkey added on the dashboard). Each verify takes only a challenge of its own
 * purpose, so a registration challenge is no login challenge. Existing rows are login challenges.
 */
export class ChallengePurpose1764950000000 implements MigrationInterface {
  name = 'ChallengePurpose1764950000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('login_challenges', new TableColumn({ ...str('purpose', 16), default: "'login'" }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropColumn('login_challenges', 'purpose');
  }
}
