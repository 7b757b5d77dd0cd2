import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../database/columns.js';

/** Agent tokens revoked before expiry (RFC 7009); rows may be purged after `expires_at`. */
@Entity({ name: 'revoked_tokens' })
export class RevokedTokenEntity {
  @PrimaryColumn({ type: 'varchar', length: 64 }) jti: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'agent_id' }) agentId: string;
  @TimeColumn('expires_at') expiresAt: number;
  @TimeColumn('revoked_at') revokedAt: number;
}
