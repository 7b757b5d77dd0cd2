import { Column, Entity, PrimaryColumn } from 'typeorm';
import { JsonColumn, TimeColumn } from '../../../database/columns.js';

@Entity({ name: 'webauthn_credentials' })
export class WebauthnCredentialEntity {
  @PrimaryColumn({ type: 'varchar', length: 40, name: 'factor_id' }) factorId: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  /** base64url credential id; unique across the service. */
  @Column({ type: 'varchar', length: 1400, name: 'credential_id' }) credentialId: string;
  /** COSE public key, base64url. */
  @Column({ type: 'text', name: 'public_key' }) publicKey: string;
  @TimeColumn('counter') counter: number;
  @JsonColumn('transports') transports: string[];
  @Column({ type: 'varchar', length: 32, name: 'device_type' }) deviceType: string;
  @Column({ type: 'boolean', name: 'backed_up' }) backedUp: boolean;
  @Column({ type: 'varchar', length: 64 }) aaguid: string;
}
