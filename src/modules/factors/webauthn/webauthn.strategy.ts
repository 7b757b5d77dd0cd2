import { Inject, Injectable } from '@nestjs/common';
import {
  generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse,
  type AuthenticationResponseJSON, type AuthenticatorTransport, type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON, type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { DataSource, type EntityManager } from 'typeorm';
import { APP_CONFIG } from '../../../config/config.js';
import type { AppConfig } from '../../../config/config.schema.js';
import { Clock } from '../../../common/clock.js';
import { AppError } from '../../../common/errors/app-error.js';
import { newId } from '../../../common/ids.js';
import { isUniqueViolation } from '../../../database/errors.js';
import type { UserEntity } from '../../users/user.entity.js';
import { FactorEntity } from '../factor.entity.js';
import type { FactorStrategy } from '../factor-strategy.js';
import { WebauthnCredentialEntity } from './webauthn-credential.entity.js';

/** ES256, EdDSA, RS256 (COSE algorithm ids). */
export const SUPPORTED_ALGS = [-7, -8, -257];

const failed = (logDetail: string) =>
  // The verifier's own message (expected challenge, origin) goes to the log only.
  new AppError('webauthn_verification_failed', 'the passkey response could not be verified', { logDetail });

/** WebAuthn L3 §7.1: a credential id longer than this is refused at registration. */
export const MAX_CREDENTIAL_ID_BYTES = 1023;

/** Our user handle: the UTF-8 bytes of our user id (see `registrationOptions`). */
export const userHandleOf = (userId: string): Buffer => Buffer.from(userId, 'utf8');

/**
 * Whether an assertion's userHandle (base64url) may come with a credential of `ownerId`: absent or
 * empty names nobody (browsers send no handle, some an empty one, for non-discoverable credentials);
 * anything else must be exactly the owner's handle.
 */
export function userHandleMatches(handle: unknown, ownerId: string): boolean {
  if (handle === undefined || handle === null || handle === '') return true;
  return typeof handle === 'string' && Buffer.from(handle, 'base64url').equals(userHandleOf(ownerId));
}

/** Reads clientDataJSON without trusting it: for checks the library leaves to us. */
export function clientData(response: { response?: { clientDataJSON?: unknown } }): Record<string, unknown> {
  const raw = response.response?.clientDataJSON;
  if (typeof raw !== 'string' || raw.length > 4096) throw failed('clientDataJSON missing or too large');
  try {
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    if (!parsed || typeof parsed !== 'object') throw new Error('not an object');
    return parsed;
  } catch {
    throw failed('clientDataJSON unreadable');
  }
}

@Injectable()
export class WebauthnStrategy implements FactorStrategy {
  readonly type = 'webauthn' as const;
  /** A passkey with user verification: hardware-bound key plus user presence/verification (RFC 8176). */
  readonly amr = ['hwk', 'user'] as const;

  constructor(
    private readonly ds: DataSource,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The origins a ceremony may come from: PUBLIC_URL's and the app's extra ones. */
  origins(appOrigins: string[]): string[] {
    return [new URL(this.config.publicUrl).origin, ...appOrigins];
  }

  credentials(appId: string, userId: string): Promise<WebauthnCredentialEntity[]> {
    return this.ds.getRepository(WebauthnCredentialEntity)
      .createQueryBuilder('c')
      .innerJoin(FactorEntity, 'f', 'f.id = c.factor_id AND f.app_id = c.app_id')
      .where('c.app_id = :appId AND c.user_id = :userId AND f.status = :active', { appId, userId, active: 'active' })
      .getMany();
  }

  /** `challenge`: one the caller derived (default: random, from the library). */
  async registrationOptions(user: UserEntity, rpName: string, challenge?: Uint8Array): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await this.credentials(user.appId, user.id);
    return generateRegistrationOptions({
      rpName,
      rpID: this.config.rpId,
      userName: user.email ?? user.externalId,
      userDisplayName: user.displayName,
      // The user handle is our opaque user id: no personal data in the authenticator.
      userID: new Uint8Array(userHandleOf(user.id)),
      attestationType: 'none',
      excludeCredentials: existing.map((c) => ({ id: c.credentialId, transports: c.transports as AuthenticatorTransport[] })),
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
      supportedAlgorithmIDs: SUPPORTED_ALGS,
      timeout: 300_000,
      ...(challenge ? { challenge: new Uint8Array(challenge) } : {}),
    });
  }

  /** Verifies a registration against the challenge we issued and stores the credential. */
  async verifyRegistration(input: {
    user: UserEntity;
    response: RegistrationResponseJSON;
    expectedChallenge: string;
    appOrigins: string[];
    name: string;
    /** Runs in the enrollment's transaction (its audit event). */
    onEnrolled?: (m: EntityManager, factorId: string) => Promise<void>;
  }): Promise<string> {
    // WebAuthn L3 §7.1 (credentialId length step): a credential id longer than 1023 bytes is refused.
    if (typeof input.response?.rawId !== 'string' || Buffer.from(input.response.rawId, 'base64url').length > MAX_CREDENTIAL_ID_BYTES) throw failed('credential id missing or longer than 1023 bytes');
    // WebAuthn §13.4.9: refuse ceremonies run inside a cross-origin iframe unless allowed.
    if (clientData(input.response).crossOrigin === true && !this.config.webauthnAllowCrossOrigin) throw failed('crossOrigin ceremony');
    let verification;
    try {
      verification = await verifyRegistrationResponse({
        response: input.response,
        expectedChallenge: input.expectedChallenge,
        expectedOrigin: this.origins(input.appOrigins),
        expectedRPID: this.config.rpId,
        expectedType: 'webauthn.create',
        requireUserVerification: true,
        supportedAlgorithmIDs: SUPPORTED_ALGS,
      });
    } catch (err) {
      throw failed(err instanceof Error ? err.message : 'verification threw');
    }
    if (!verification.verified || !verification.registrationInfo) throw failed('not verified');
    const { credential, credentialDeviceType, credentialBackedUp, aaguid } = verification.registrationInfo;
    // WebAuthn L3 §7.1: the id stored is the one in the attested credential data; it must be the one
    // the response names (and so the one whose length was checked above).
    if (!Buffer.from(credential.id, 'base64url').equals(Buffer.from(input.response.rawId, 'base64url'))) throw failed('credential id in authenticator data differs from rawId');
    const now = this.clock.now();
    const factorId = newId('factor');
    try {
      await this.ds.transaction(async (m) => {
        await m.insert(FactorEntity, { id: factorId, appId: input.user.appId, userId: input.user.id, type: 'webauthn', name: input.name, status: 'active', createdAt: now, lastUsedAt: null });
        await m.insert(WebauthnCredentialEntity, {
          factorId,
          appId: input.user.appId,
          userId: input.user.id,
          credentialId: credential.id,
          publicKey: Buffer.from(credential.publicKey).toString('base64url'),
          counter: credential.counter,
          transports: credential.transports ?? [],
          deviceType: credentialDeviceType,
          backedUp: credentialBackedUp,
          aaguid,
        });
        await input.onEnrolled?.(m, factorId);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw failed('credential id already registered');
      throw err;
    }
    return factorId;
  }

  /** Request options whose challenge the caller derived (for approvals: nonce ‖ hash of the request). */
  authenticationOptions(credentials: WebauthnCredentialEntity[], challenge: Uint8Array, timeoutMs: number): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return generateAuthenticationOptions({
      rpID: this.config.rpId,
      allowCredentials: credentials.map((c) => ({ id: c.credentialId, transports: c.transports as AuthenticatorTransport[] })),
      userVerification: 'required',
      challenge: new Uint8Array(challenge),
      timeout: timeoutMs,
    });
  }

  /**
   * Request options for passkey sign-in without a link (discoverable credentials, WebAuthn L3
   * §5.4.4 with an empty allowCredentials): no `allowCredentials`, so the authenticator offers
   * its resident credentials for our rp id; user verification required.
   */
  discoverableOptions(challenge: Uint8Array, timeoutMs: number): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return generateAuthenticationOptions({ rpID: this.config.rpId, userVerification: 'required', challenge: new Uint8Array(challenge), timeout: timeoutMs });
  }

  /** An active credential by its id, across apps (credential ids are unique service-wide): for discoverable sign-in only. */
  credentialById(credentialId: string): Promise<WebauthnCredentialEntity | null> {
    if (typeof credentialId !== 'string' || credentialId.length === 0 || credentialId.length > 1400) return Promise.resolve(null);
    return this.ds.getRepository(WebauthnCredentialEntity)
      .createQueryBuilder('c')
      .innerJoin(FactorEntity, 'f', 'f.id = c.factor_id AND f.app_id = c.app_id')
      .where('c.credential_id = :credentialId AND f.status = :active', { credentialId, active: 'active' })
      .getOne();
  }

  /**
   * Verifies an assertion by one of `credentials` (the step-up user's own) against the expected
   * challenge. Returns the credential and its new sign counter; throws webauthn_verification_failed.
   */
  async verifyAssertion(input: {
    response: AuthenticationResponseJSON;
    expectedChallenge: string;
    appOrigins: string[];
    credentials: WebauthnCredentialEntity[];
  }): Promise<{ credential: WebauthnCredentialEntity; newCounter: number }> {
    if (typeof input.response?.id !== 'string') throw failed('no credential id');
    // The credential must belong to the step-up's user: another user's passkey cannot approve.
    const credential = input.credentials.find((c) => c.credentialId === input.response.id);
    if (!credential) throw failed('credential not registered to this user');
    // WebAuthn §7.2 step 6: a userHandle, when present, must be the user handle of the credential's owner.
    if (!userHandleMatches(input.response.response?.userHandle, credential.userId)) throw failed('userHandle is not the credential owner’s');
    if (clientData(input.response).crossOrigin === true && !this.config.webauthnAllowCrossOrigin) throw failed('crossOrigin ceremony');
    let verification;
    try {
      verification = await verifyAuthenticationResponse({
        response: input.response,
        expectedChallenge: input.expectedChallenge,
        expectedOrigin: this.origins(input.appOrigins),
        expectedRPID: this.config.rpId,
        expectedType: 'webauthn.get',
        requireUserVerification: true,
        credential: {
          id: credential.credentialId,
          publicKey: new Uint8Array(Buffer.from(credential.publicKey, 'base64url')),
          counter: credential.counter,
          transports: credential.transports as AuthenticatorTransport[],
        },
      });
    } catch (err) {
      // Includes a sign counter that did not advance (WebAuthn §6.1.1: possible cloned authenticator).
      throw failed(err instanceof Error ? err.message : 'verification threw');
    }
    if (!verification.verified) throw failed('not verified');
    return { credential, newCounter: verification.authenticationInfo.newCounter };
  }

  /**
   * Advances the stored counter in one conditional write, so two assertions with the same counter
   * cannot both count. Authenticators that always report 0 stay at 0.
   */
  async advanceCounter(m: EntityManager, credential: WebauthnCredentialEntity, newCounter: number): Promise<boolean> {
    const res = await m
      .createQueryBuilder()
      .update(WebauthnCredentialEntity)
      .set({ counter: newCounter })
      .where('factor_id = :id AND app_id = :appId AND (counter < :n OR (counter = 0 AND :n = 0))', { id: credential.factorId, appId: credential.appId, n: newCounter })
      .execute();
    return (res.affected ?? 0) === 1;
  }

  async removeData(m: EntityManager, factor: FactorEntity): Promise<void> {
    await m.delete(WebauthnCredentialEntity, { appId: factor.appId, factorId: factor.id });
  }
}
