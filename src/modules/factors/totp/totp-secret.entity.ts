import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../../database/columns.js';

@Entity({ name: 'totp_secrets' })
export class TotpSecretEntity {
  @PrimaryColumn({ type: 'varchar', length: 40, name: 'factor_id' }) factorId: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  /** The base32 secret, AES-256-GCM, AAD totp_secrets.secret_enc.<factor id>. */
  @Column({ type: 'text', name: 'secret_enc' }) secretEnc: string;
  /** The newest RFC 6238 time step accepted; a code of this step or older is refused. */
  @TimeColumn('last_used_step', { nullable: true }) lastUsedStep: number | null;
}
