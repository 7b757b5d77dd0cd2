import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../database/columns.js';

export type FactorType = 'webauthn' | 'totp';
export type FactorStatus = 'pending' | 'active';

/** A human's second factor. Each type's own data lives in its strategy's table. */
@Entity({ name: 'factors' })
export class FactorEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  @Column({ type: 'varchar', length: 16 }) type: FactorType;
  @Column({ type: 'varchar', length: 100 }) name: string;
  @Column({ type: 'varchar', length: 16 }) status: FactorStatus;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('last_used_at', { nullable: true }) lastUsedAt: number | null;
}
