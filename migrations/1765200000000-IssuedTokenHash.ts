import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `step_ups.token_hash`: the SHA-256 of the MFA-proxy token as it was handed out. Verification
 * consumes a token whose hash is this one without checking its signature (the token is then the
 * one issued, byte for byte); any other token is checked as before. Rows handed out before this
 * column have none and are verified by signature. A plain ADD COLUMN on both databases: no table
 * rewrite on SQLite (TypeORM's addColumn copies the whole table there), none on PostgreSQL.
 */
export class IssuedTokenHash1765200000000 implements MigrationInterface {
  name = 'IssuedTokenHash1765200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE step_ups ADD COLUMN token_hash varchar(64)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE step_ups DROP COLUMN token_hash');
  }
}
