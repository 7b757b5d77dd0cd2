import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../database/columns.js';

export const SYSTEM_APP_ID = '_system';

@Entity({ name: 'signing_keys' })
export class SigningKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 64 }) kid: string;
  /** Signing keys belong to the service, not to a tenant: `_system`. */
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 16 }) alg: string;
  @Column({ type: 'text', name: 'public_jwk' }) publicJwk: string;
  /** The private JWK, AES-256-GCM, AAD signing_keys.private_jwk_enc.<kid>. */
  @Column({ type: 'text', name: 'private_jwk_enc' }) privateJwkEnc: string;
  @TimeColumn('created_at') createdAt: number;
  /** Set by rotation: the key no longer signs. */
  @TimeColumn('retired_at', { nullable: true }) retiredAt: number | null;
  /** A retired key stays in the JWKS until every token it signed has expired. */
  @TimeColumn('publish_until', { nullable: true }) publishUntil: number | null;
}
