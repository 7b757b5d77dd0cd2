import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Every instance re-reads the tokens revoked since its last reading (RevocationList.sync, every
 * PRINCIPAL_CACHE_SECONDS), so a revocation whose pub/sub message was lost still takes effect: an
 * index on `revoked_at` keeps that reading to the new rows. The table is small (rows are purged
 * once their token has expired) and the build short.
 */
export class RevokedTokensRevokedAt1765700000000 implements MigrationInterface {
  name = 'RevokedTokensRevokedAt1765700000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createIndex('revoked_tokens', new TableIndex({ name: 'ix_revoked_tokens_revoked_at', columnNames: ['revoked_at'] }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('revoked_tokens', 'ix_revoked_tokens_revoked_at');
  }
}
