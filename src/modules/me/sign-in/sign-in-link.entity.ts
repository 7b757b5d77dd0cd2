import { Column, Entity, PrimaryColumn } from 'typeorm';
import { TimeColumn } from '../../../database/columns.js';

/** An app-issued sign-in link (API.md v1.1): single use, bound to its app and user. */
@Entity({ name: 'sign_in_links' })
export class SignInLinkEntity {
  @PrimaryColumn({ type: 'varchar', length: 40 }) id: string;
  @Column({ type: 'varchar', length: 40, name: 'app_id' }) appId: string;
  @Column({ type: 'varchar', length: 40, name: 'user_id' }) userId: string;
  /** SHA-256 of the link token; the token is only in the URL handed to the app. */
  @Column({ type: 'varchar', length: 64, name: 'token_hash' }) tokenHash: string;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('expires_at') expiresAt: number;
  /** Set once, by the one conditional write that starts the session. */
  @TimeColumn('used_at', { nullable: true }) usedAt: number | null;
  /** Failed proofs so far (MAX_SIGN_IN_ATTEMPTS, then the link is spent). */
  @Column({ type: 'integer' }) attempts: number;
  /** The pending WebAuthn challenge: one verify attempt, cleared by it. */
  @Column({ type: 'varchar', length: 128, name: 'webauthn_challenge', nullable: true }) webauthnChallenge: string | null;
  @TimeColumn('webauthn_challenge_expires_at', { nullable: true }) webauthnChallengeExpiresAt: number | null;
}

/** 'login': passkey sign-in without a link; 'register': a passkey added on the dashboard. */
export type ChallengePurpose = 'login' | 'register';

/** A challenge of passkey sign-in without a link (discoverable credentials): single use, short-lived. */
@Entity({ name: 'login_challenges' })
export class LoginChallengeEntity {
  /** SHA-256 (base64url) of the challenge. */
  @PrimaryColumn({ type: 'varchar', length: 64, name: 'challenge_hash' }) challengeHash: string;
  @Column({ type: 'varchar', length: 64, nullable: true }) ip: string | null;
  /** What the challenge is for: each verify takes only challenges of its own purpose. */
  @Column({ type: 'varchar', length: 16, default: 'login' }) purpose: ChallengePurpose;
  @TimeColumn('created_at') createdAt: number;
  @TimeColumn('expires_at') expiresAt: number;
}
