import { Injectable } from '@nestjs/common';
import type { PublicKeyCredentialCreationOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { randomBytes } from 'node:crypto';
import type { HumanPrincipal } from '../../../common/auth/human.js';
import { Clock } from '../../../common/clock.js';
import { hashSecret, sha256 } from '../../../common/crypto/tokens.js';
import { AppError, notFound } from '../../../common/errors/app-error.js';
import { iso, isoOrNull } from '../../../common/time.js';
import { AppsService } from '../../apps/apps.service.js';
import type { CreatedTotpDto, FactorIdDto, TotpConfirmedDto } from '../../factors/dto/factor.dto.js';
import { FactorsRepository } from '../../factors/factors.repository.js';
import { FactorsService } from '../../factors/factors.service.js';
import { TotpStrategy } from '../../factors/totp/totp.strategy.js';
import { clientData, WebauthnStrategy } from '../../factors/webauthn/webauthn.strategy.js';
import type { UserEntity } from '../../users/user.entity.js';
import { UsersRepository } from '../../users/users.repository.js';
import type { MeFactorDto } from '../dto/dashboard.dto.js';
import { LoginChallengeEntity } from '../sign-in/sign-in-link.entity.js';
import { SignInRepository } from '../sign-in/sign-in.repository.js';

/** API.md v1.1: factors are added only within 5 min of a factor proof (sign-in, inline approval). */
export const REAUTH_WINDOW_MS = 5 * 60_000;
const CHALLENGE_TTL_MS = 5 * 60_000;
const NONCE_BYTES = 16;

/** A registration challenge bound to one session: nonce ‖ SHA-256(purpose ‖ session id ‖ nonce). */
const registrationChallenge = (sessionId: string, nonce: Buffer) => Buffer.concat([nonce, sha256(Buffer.concat([Buffer.from(`mpx-factor-registration:${sessionId}:`), nonce]))]);

/** The signed-in human's factors: listed, added within the re-authentication window, removed (never the last). */
@Injectable()
export class MeFactorsService {
  constructor(
    private readonly factors: FactorsRepository,
    private readonly factorsService: FactorsService,
    private readonly webauthn: WebauthnStrategy,
    private readonly totp: TotpStrategy,
    private readonly users: UsersRepository,
    private readonly apps: AppsService,
    private readonly challenges: SignInRepository,
    private readonly clock: Clock,
  ) {}

  async list(human: HumanPrincipal): Promise<{ factors: MeFactorDto[] }> {
    const factors = await this.factors.active(human.appId, human.userId);
    return { factors: factors.map((f) => ({ id: f.id, type: f.type, name: f.name, createdAt: iso(f.createdAt), lastUsedAt: isoOrNull(f.lastUsedAt) })) };
  }

  async webauthnOptions(human: HumanPrincipal): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const user = await this.reauthenticatedUserOrThrow(human);
    const options = await this.webauthn.registrationOptions(user, await this.apps.name(user.appId), registrationChallenge(human.sessionId, randomBytes(NONCE_BYTES)));
    const now = this.clock.now();
    // Issued challenges are single use: stored hashed, taken by the verify.
    await this.challenges.insertChallenge(Object.assign(new LoginChallengeEntity(), { challengeHash: hashSecret(options.challenge), ip: null, purpose: 'register', createdAt: now, expiresAt: now + CHALLENGE_TTL_MS }));
    return options;
  }

  async webauthnVerify(human: HumanPrincipal, response: Record<string, unknown>, name?: string): Promise<FactorIdDto> {
    const user = await this.reauthenticatedUserOrThrow(human);
    const failed = (logDetail: string) => new AppError('webauthn_verification_failed', 'the passkey response could not be verified', { logDetail });
    const challenge = clientData(response as { response?: { clientDataJSON?: unknown } }).challenge;
    if (typeof challenge !== 'string' || challenge.length > 200) throw failed('no challenge');
    // Ours, for this session, and unused (taken now: one attempt per options call).
    const raw = Buffer.from(challenge, 'base64url');
    if (raw.length !== NONCE_BYTES + 32 || !registrationChallenge(human.sessionId, raw.subarray(0, NONCE_BYTES)).equals(raw)) throw failed('challenge not issued to this session');
    if (!(await this.challenges.takeChallengeByHash(hashSecret(challenge), this.clock.now(), 'register'))) throw failed('no, expired or reused challenge');
    const factorId = await this.webauthn.verifyRegistration({
      user,
      response: response as unknown as RegistrationResponseJSON,
      expectedChallenge: challenge,
      appOrigins: (await this.apps.findOrThrow(user.appId)).origins,
      name: name ?? 'Passkey',
      onEnrolled: (m, id) => this.factorsService.recordEnrolled(m, { appId: user.appId, userId: user.id, id, type: 'webauthn' }),
    });
    return { factorId };
  }

  async totpCreate(human: HumanPrincipal, name?: string): Promise<CreatedTotpDto> {
    const user = await this.reauthenticatedUserOrThrow(human);
    return this.totp.create(user, await this.apps.name(user.appId), name ?? 'Authenticator app');
  }

  async totpConfirm(human: HumanPrincipal, factorId: string, code: string): Promise<TotpConfirmedDto> {
    const user = await this.reauthenticatedUserOrThrow(human);
    return this.factorsService.confirmTotpOrThrow(user.appId, user.id, factorId, code);
  }

  remove(human: HumanPrincipal, factorId: string): Promise<void> {
    return this.factorsService.deleteUnlessLast(human.appId, human.userId, factorId);
  }

  /** 403 `reauth_required` unless this session proved a factor within the last 5 minutes. */
  private async reauthenticatedUserOrThrow(human: HumanPrincipal): Promise<UserEntity> {
    if (human.factorProvedAt === null || this.clock.now() - human.factorProvedAt > REAUTH_WINDOW_MS) {
      throw new AppError('reauth_required', 'adding a factor needs a factor proof within the last 5 minutes: sign in again', { status: 403 });
    }
    const user = await this.users.find(human.appId, human.userId);
    if (!user) throw notFound('user');
    return user;
  }
}
