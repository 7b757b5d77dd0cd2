import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../database/columns.js';

/**
 * An accepted transaction challenge, by (app, `jti`): the primary key makes a challenge start at
 * most one step-up, on every instance. Kept until the challenge has expired (after that it is
 * refused for its `exp` whatever this table holds).
 */
@Entity({ name: 'txn_challenges' })
export class TxnChallengeEntity {
  @PrimaryColumn({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @PrimaryColumn({ type: 'varchar', length: 255 }) jti: string;
  @Column({ type: 'varchar', length: 40, name: 'agent_id' }) agentId: string;
  /** The step-up the challenge started; null for the moment between the claim and the creation. */
  @Column({ type: 'varchar', length: 40, name: 'step_up_id', nullable: true }) stepUpId: string | null;
  @TimeColumn('expires_at') expiresAt: number;
  @TimeColumn('created_at') createdAt: number;
}
