import { Injectable } from '@nestjs/common';
import { DataSource, IsNull, LessThan } from 'typeorm';
import { isUniqueViolation } from '../../database/errors.js';
import { TxnChallengeEntity } from './txn-challenge.entity.js';

/** The single-use registry of transaction challenges (draft-rosomakho-oauth-txn-challenge-00 §4.2.2 `jti`). */
@Injectable()
export class TxnChallengesRepository {
  constructor(readonly ds: DataSource) {}

  /**
   * Claims a challenge's `jti` for this app: one insert, decided by the primary key on every
   * instance. False when it was claimed before (a replay, or a concurrent twin).
   */
  async claim(row: Omit<TxnChallengeEntity, 'stepUpId'>): Promise<boolean> {
    try {
      await this.ds.getRepository(TxnChallengeEntity).insert({ ...row, stepUpId: null });
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  /** Records the step-up the claimed challenge started. */
  async attach(appId: string, jti: string, stepUpId: string): Promise<void> {
    await this.ds.getRepository(TxnChallengeEntity).update({ appId, jti, stepUpId: IsNull() }, { stepUpId });
  }

  /** Lets go of a claim whose step-up could not be created (nothing was started: the challenge may be presented again). */
  async release(appId: string, jti: string): Promise<void> {
    await this.ds.getRepository(TxnChallengeEntity).delete({ appId, jti, stepUpId: IsNull() });
  }

  /**
   * Forgets challenges expired before `before` (they are refused for their `exp` anyway), oldest
   * first: read in the order of ix_txn_challenges_expires, the batch is the first `limit` entries
   * of its range. Unordered, PostgreSQL read the table from its start (a sequential scan, through
   * whatever it held before the first expired row).
   */
  async purgeExpired(before: number, limit: number): Promise<number> {
    const rows = await this.ds
      .getRepository(TxnChallengeEntity)
      .find({ select: { appId: true, jti: true }, where: { expiresAt: LessThan(before) }, order: { expiresAt: 'ASC' }, take: limit });
    for (const r of rows) await this.ds.getRepository(TxnChallengeEntity).delete({ appId: r.appId, jti: r.jti, expiresAt: LessThan(before) });
    return rows.length;
  }
}
