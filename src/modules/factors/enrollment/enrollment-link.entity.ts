import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../../database/columns.js';

@Entity({ name: 'enrollment_links' })
export class EnrollmentLinkEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  /** SHA-256 of the link token; the token is only in the URL handed to the app. */
  @Column({ type: 'varchar', length: 64, name: 'token_hash' }) tokenHash: string;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('expires_at') expiresAt: number;
  /** The pending registration challenge: usable once, cleared on any verify attempt. */
  @Column({ type: 'varchar', length: 128, name: 'webauthn_challenge', nullable: true }) webauthnChallenge: string | null;
  @TimeColumn('webauthn_challenge_expires_at', { nullable: true }) webauthnChallengeExpiresAt: number | null;
  @Column({ type: 'varchar', length: 100, name: 'webauthn_name', nullable: true }) webauthnName: string | null;
}
