import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../../database/columns.js';

/** A dashboard session. Only the SHA-256 of the cookie value is stored. */
@Entity({ name: 'human_sessions' })
export class HumanSessionEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  @Column({ type: 'varchar', length: 64, name: 'token_hash' }) tokenHash: string;
  @TimeColumn('created_at') createdAt: number;
  /** Updated at most once a minute (SESSION_TOUCH_MS): the idle limit counts from here. */
  @TimeColumn('last_seen_at') lastSeenAt: number;
  /** The absolute end (12 h after sign-in). */
  @TimeColumn('expires_at') expiresAt: number;
  /** The last factor proof in this session (sign-in, inline approval): opens the re-authentication window. */
  @TimeColumn('factor_proved_at', { nullable: true }) factorProvedAt: number | null;
  /** How the session was started: `webauthn` or `totp`. */
  @Column({ type: 'varchar', length: 16 }) method: string;
}
