import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { randomBytes } from 'node:crypto';
import { APP_CONFIG } from '../../../config/config.js';
import type { AppConfig } from '../../../config/config.schema.js';
import { AuditLog } from '../../../common/audit-log.js';
import { Cascades } from '../../../common/cascade.js';
import { Clock } from '../../../common/clock.js';
import { hashSecret, randomToken, TOKEN_PREFIX } from '../../../common/crypto/tokens.js';
import { AppError, notFound } from '../../../common/errors/app-error.js';
import { newId } from '../../../common/ids.js';
import { RequestContext } from '../../../common/request-context.js';
import { Serializer } from '../../../database/serializer.js';
import { AppsService } from '../../apps/apps.service.js';
import { FactorsRepository } from '../../factors/factors.repository.js';
import { TotpStrategy } from '../../factors/totp/totp.strategy.js';
import { clientData, userHandleMatches, WebauthnStrategy } from '../../factors/webauthn/webauthn.strategy.js';
import type { WebauthnCredentialEntity } from '../../factors/webauthn/webauthn-credential.entity.js';
import { loginChallengesKey, loginVerifyKey, signInAttemptsKey, userTotpKey } from '../../rate-limit/buckets.js';
import { RateLimitService } from '../../rate-limit/rate-limit.service.js';
import type { UserEntity } from '../../users/user.entity.js';
import { UsersRepository } from '../../users/users.repository.js';
import { UsersService } from '../../users/users.service.js';
import type { SignInLinkDto } from '../dto/sign-in.dto.js';
import { HumanSessionsService } from '../session/human-sessions.service.js';
import { LoginChallengeEntity, SignInLinkEntity } from './sign-in-link.entity.js';
import { SignInRepository } from './sign-in.repository.js';

const DEFAULT_LINK_TTL_S = 600;
const CHALLENGE_TTL_MS = 5 * 60_000;
/** Login challenges outstanding (unexpired) at once, all sources together: past it, 429 until one expires. */
export const MAX_OUTSTANDING_LOGIN_CHALLENGES = 10_000;
/** Failed proofs a sign-in link survives; the fifth spends it. */
export const MAX_SIGN_IN_ATTEMPTS = 5;

/** A sign-in: the Set-Cookie of the new session, and who signed in. */
export interface SignedIn {
  cookie: string;
  user: { id: string; displayName: string };
}

const failed = (logDetail: string) => new AppError('webauthn_verification_failed', 'the passkey response could not be verified', { logDetail });

/**
 * Signing a human in (API.md v1.1): by an app-issued single-use link and a factor of that user, or
 * by a discoverable passkey without a link. The factor strategies are the ones approvals use, with
 * the same rate limits and TOTP replay protection; success starts a session.
 */
@Injectable()
export class SignInService implements OnModuleInit {
  /** MAX_OUTSTANDING_LOGIN_CHALLENGES (a test sets a small one). */
  loginChallengeCap = MAX_OUTSTANDING_LOGIN_CHALLENGES;

  constructor(
    private readonly repo: SignInRepository,
    private readonly users: UsersService,
    private readonly usersRepo: UsersRepository,
    private readonly apps: AppsService,
    private readonly factors: FactorsRepository,
    private readonly webauthn: WebauthnStrategy,
    private readonly totp: TotpStrategy,
    private readonly sessions: HumanSessionsService,
    private readonly limits: RateLimitService,
    private readonly serializer: Serializer,
    private readonly audit: AuditLog,
    private readonly cascades: Cascades,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.cascades.on('user.deleted', (m, e) => this.repo.deleteLinksOfUser(m, e.appId, e.userId));
  }

  async createLink(appId: string, userId: string, expiresIn = DEFAULT_LINK_TTL_S): Promise<SignInLinkDto> {
    const user = await this.users.findOrThrow(appId, userId);
    const token = randomToken(TOKEN_PREFIX.signIn);
    const now = this.clock.now();
    const link = Object.assign(new SignInLinkEntity(), {
      id: newId('signInLink'), appId, userId: user.id, tokenHash: hashSecret(token), createdAt: now, expiresAt: now + expiresIn * 1000,
      usedAt: null, attempts: 0, webauthnChallenge: null, webauthnChallengeExpiresAt: null,
    });
    await this.repo.insertLink(link);
    return { url: `${this.config.publicUrl}/me/sign-in/${token}`, expiresAt: new Date(link.expiresAt).toISOString() };
  }

  /** The live link behind a token and its user; unknown, used, expired, spent by failures, or of a deleted user: 404. */
  async resolve(token: string): Promise<{ link: SignInLinkEntity; user: UserEntity }> {
    const link = typeof token === 'string' && token.startsWith(TOKEN_PREFIX.signIn) && token.length < 200 ? await this.repo.findLinkByTokenHash(hashSecret(token)) : null;
    const live = link && link.usedAt === null && link.expiresAt > this.clock.now() && link.attempts < MAX_SIGN_IN_ATTEMPTS;
    const user = live ? await this.usersRepo.find(link.appId, link.userId) : null;
    if (!link || !user) throw notFound('sign-in link');
    RequestContext.assign({ appId: user.appId, actorType: 'human', actorId: user.id, userId: user.id });
    return { link, user };
  }

  async info(token: string): Promise<{ app: { name: string }; user: { displayName: string }; methods: string[] }> {
    const { user } = await this.resolve(token);
    const methods = [...new Set((await this.factors.active(user.appId, user.id)).map((f) => f.type))];
    return { app: { name: await this.apps.name(user.appId) }, user: { displayName: user.displayName }, methods };
  }

  async linkWebauthnOptions(token: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const { link, user } = await this.resolve(token);
    const credentials = await this.webauthn.credentials(user.appId, user.id);
    if (credentials.length === 0) throw new AppError('no_enrolled_factor', 'the user has no passkey');
    const timeout = Math.min(CHALLENGE_TTL_MS, link.expiresAt - this.clock.now());
    const options = await this.webauthn.authenticationOptions(credentials, randomBytes(32), timeout);
    await this.repo.setChallenge(link, options.challenge, this.clock.now() + timeout);
    return options;
  }

  async linkWebauthnVerify(token: string, response: Record<string, unknown>): Promise<SignedIn> {
    const { link, user } = await this.resolve(token);
    // Rate-limit before verifying (per link); a failed proof also counts against the link.
    await this.limits.consume('signInAttempts', signInAttemptsKey(link.id));
    // The assertion's challenge must be the link's pending one, taken now (one verify per options
    // call). None pending, superseded or reused is no proof at all: 409, and the link keeps its attempts.
    const challenge = clientData(response as { response?: { clientDataJSON?: unknown } }).challenge;
    if (typeof challenge !== 'string' || challenge.length > 128 || !(await this.repo.takeChallenge(link, challenge, this.clock.now()))) {
      throw new AppError('conflict', 'no pending passkey challenge for this response: request options again');
    }
    let verified: { credential: WebauthnCredentialEntity; newCounter: number };
    try {
      // Only THIS user's passkeys: another user's credential is "not registered to this user".
      verified = await this.webauthn.verifyAssertion({
        response: response as unknown as AuthenticationResponseJSON,
        expectedChallenge: challenge,
        appOrigins: (await this.apps.findOrThrow(user.appId)).origins,
        credentials: await this.webauthn.credentials(user.appId, user.id),
      });
    } catch (err) {
      // A proof over the pending challenge that fails: counted against the link.
      if (err instanceof AppError && err.code === 'webauthn_verification_failed') await this.repo.addFailure(link);
      throw err;
    }
    return this.finishLink(link, user, 'webauthn', verified);
  }

  async linkTotp(token: string, code: string): Promise<SignedIn> {
    const { link, user } = await this.resolve(token);
    await this.limits.consume('signInAttempts', signInAttemptsKey(link.id));
    // The user's account-wide TOTP budget, shared with approvals.
    await this.limits.consume('userTotp', userTotpKey(user.appId, user.id));
    const totps = (await this.factors.active(user.appId, user.id)).filter((f) => f.type === 'totp');
    if (totps.length === 0) throw new AppError('no_enrolled_factor', 'the user has no authenticator app');
    // One code at a time per link (every database, every instance): the attempt limit is exact.
    const outcome = await this.serializer.run(`sign-in:${link.id}`, async (m) => {
      const fresh = await this.repo.findLink(link.id, m);
      if (!fresh || fresh.usedAt !== null || fresh.expiresAt <= this.clock.now() || fresh.attempts >= MAX_SIGN_IN_ATTEMPTS) return { kind: 'spent' as const };
      for (const factor of totps) {
        // Replay protection: a code of a step not newer than the factor's last one is refused (last_used_step).
        if ((await this.totp.consumeCode(m, user.appId, factor.id, code)) === null) continue;
        if (!(await this.repo.markUsed(m, fresh, this.clock.now(), MAX_SIGN_IN_ATTEMPTS))) return { kind: 'spent' as const };
        await this.factors.touch(m, user.appId, factor.id, this.clock.now());
        return { kind: 'ok' as const, cookie: await this.sessions.startIn(m, { appId: user.appId, userId: user.id }, 'totp') };
      }
      const failures = (await this.repo.addFailure(fresh, m)) ?? MAX_SIGN_IN_ATTEMPTS;
      await this.audit.record(m, { appId: user.appId, type: 'sign_in.failed', outcome: 'failure', userId: user.id, action: 'totp' });
      return { kind: 'invalid' as const, remaining: Math.max(0, MAX_SIGN_IN_ATTEMPTS - failures) };
    });
    if (outcome.kind === 'spent') throw notFound('sign-in link');
    if (outcome.kind === 'invalid') {
      throw new AppError('invalid_code', outcome.remaining === 0 ? 'too many wrong codes: this link is used up' : 'the code is not valid', { extensions: { attemptsRemaining: outcome.remaining } });
    }
    return { cookie: outcome.cookie, user: { id: user.id, displayName: user.displayName } };
  }

  /** Spends the link (one conditional write), advances the counter and starts the session, in one transaction. */
  private async finishLink(link: SignInLinkEntity, user: UserEntity, method: 'webauthn', v: { credential: WebauthnCredentialEntity; newCounter: number }): Promise<SignedIn> {
    const outcome = await this.repo.ds.transaction(async (m) => {
      if (!(await this.webauthn.advanceCounter(m, v.credential, v.newCounter))) return { kind: 'replayed' as const };
      if (!(await this.repo.markUsed(m, link, this.clock.now(), MAX_SIGN_IN_ATTEMPTS))) return { kind: 'spent' as const };
      await this.factors.touch(m, user.appId, v.credential.factorId, this.clock.now());
      return { kind: 'ok' as const, cookie: await this.sessions.startIn(m, { appId: user.appId, userId: user.id }, method) };
    });
    if (outcome.kind === 'replayed') throw failed('counter did not advance');
    if (outcome.kind === 'spent') throw notFound('sign-in link');
    return { cookie: outcome.cookie, user: { id: user.id, displayName: user.displayName } };
  }

  /** Options for passkey sign-in without a link: no allowCredentials; the challenge is stored hashed, single use, 5 min. */
  async loginOptions(ip: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    // Unauthenticated rows: at most loginChallenges' budget outstanding per source.
    await this.limits.consume('loginChallenges', loginChallengesKey(ip));
    const now = this.clock.now();
    await this.repo.deleteExpired(now);
    // And all sources together (many addresses, many /64s): a global cap on outstanding rows. Counted
    // then inserted, so concurrent requests may pass it by their number: a bound on storage, not a secret.
    const outstanding = await this.repo.outstandingLoginChallenges(now);
    if (outstanding.count >= this.loginChallengeCap) {
      const retryAfter = Math.max(1, Math.ceil(((outstanding.firstExpiry ?? now + CHALLENGE_TTL_MS) - now) / 1000));
      throw new AppError('rate_limited', 'too many passkey sign-ins in progress: try again shortly', { headers: { 'Retry-After': String(retryAfter) } });
    }
    const options = await this.webauthn.discoverableOptions(randomBytes(32), CHALLENGE_TTL_MS);
    await this.repo.insertChallenge(Object.assign(new LoginChallengeEntity(), { challengeHash: hashSecret(options.challenge), ip: ip.slice(0, 64), purpose: 'login', createdAt: now, expiresAt: now + CHALLENGE_TTL_MS }));
    return options;
  }

  async loginVerify(response: Record<string, unknown>, ip: string): Promise<SignedIn> {
    await this.limits.consume('loginVerify', loginVerifyKey(ip));
    const assertion = response as unknown as AuthenticationResponseJSON;
    // The challenge we issued, taken (deleted) before anything else: one attempt per challenge.
    const challenge = clientData(assertion).challenge;
    if (typeof challenge !== 'string' || challenge.length > 200 || !(await this.repo.takeChallengeByHash(hashSecret(challenge), this.clock.now(), 'login'))) throw failed('no, expired or reused login challenge');
    const credential = await this.webauthn.credentialById(assertion.id);
    if (!credential) throw failed('unknown credential');
    // WebAuthn L3 §7.2 step 6: with no allowCredentials the userHandle must be present and name the credential's owner.
    const handle = assertion.response?.userHandle;
    if (typeof handle !== 'string' || handle === '' || !userHandleMatches(handle, credential.userId)) throw failed('userHandle absent or not the credential owner’s');
    const user = await this.usersRepo.find(credential.appId, credential.userId);
    if (!user) throw failed('credential of a deleted user');
    RequestContext.assign({ appId: user.appId, actorType: 'human', actorId: user.id, userId: user.id });
    const verified = await this.webauthn.verifyAssertion({
      response: assertion,
      expectedChallenge: challenge,
      appOrigins: (await this.apps.findOrThrow(user.appId)).origins,
      credentials: [credential],
    });
    const outcome = await this.repo.ds.transaction(async (m) => {
      if (!(await this.webauthn.advanceCounter(m, verified.credential, verified.newCounter))) return null;
      await this.factors.touch(m, user.appId, credential.factorId, this.clock.now());
      return this.sessions.startIn(m, { appId: user.appId, userId: user.id }, 'webauthn');
    });
    if (!outcome) throw failed('counter did not advance');
    return { cookie: outcome, user: { id: user.id, displayName: user.displayName } };
  }
}
