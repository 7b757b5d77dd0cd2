import { Inject, Injectable } from '@nestjs/common';
import type { PublicKeyCredentialCreationOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { APP_CONFIG } from '../../../config/config.js';
import type { AppConfig } from '../../../config/config.schema.js';
import { Clock } from '../../../common/clock.js';
import { hashSecret, randomToken, TOKEN_PREFIX } from '../../../common/crypto/tokens.js';
import { AppError, notFound } from '../../../common/errors/app-error.js';
import { newId } from '../../../common/ids.js';
import { RequestContext } from '../../../common/request-context.js';
import { AppsService } from '../../apps/apps.service.js';
import type { UserEntity } from '../../users/user.entity.js';
import { UsersRepository } from '../../users/users.repository.js';
import { UsersService } from '../../users/users.service.js';
import type { CreatedTotpDto, EnrollmentInfoDto, EnrollmentLinkDto, FactorIdDto, TotpConfirmedDto } from '../dto/factor.dto.js';
import { FactorsRepository } from '../factors.repository.js';
import { FactorsService } from '../factors.service.js';
import { TotpStrategy } from '../totp/totp.strategy.js';
import { WebauthnStrategy } from '../webauthn/webauthn.strategy.js';
import { EnrollmentLinkEntity } from './enrollment-link.entity.js';
import { EnrollmentRepository } from './enrollment.repository.js';

const DEFAULT_LINK_TTL_S = 86_400;
const CHALLENGE_TTL_MS = 5 * 60_000;

interface Enrollment {
  link: EnrollmentLinkEntity;
  user: UserEntity;
}

/** Enrollment links and the ceremonies a human runs through one. */
@Injectable()
export class EnrollmentService {
  constructor(
    private readonly links: EnrollmentRepository,
    private readonly users: UsersService,
    private readonly usersRepo: UsersRepository,
    private readonly apps: AppsService,
    private readonly factors: FactorsRepository,
    private readonly factorsService: FactorsService,
    private readonly webauthn: WebauthnStrategy,
    private readonly totp: TotpStrategy,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async createLink(appId: string, userId: string, expiresIn = DEFAULT_LINK_TTL_S): Promise<EnrollmentLinkDto> {
    const user = await this.users.findOrThrow(appId, userId);
    const token = randomToken(TOKEN_PREFIX.enrollment);
    const now = this.clock.now();
    const link = Object.assign(new EnrollmentLinkEntity(), {
      id: newId('enrollment'),
      appId,
      userId: user.id,
      tokenHash: hashSecret(token),
      createdAt: now,
      expiresAt: now + expiresIn * 1000,
      webauthnChallenge: null,
      webauthnChallengeExpiresAt: null,
      webauthnName: null,
    });
    await this.links.insert(link);
    return { url: `${this.config.publicUrl}/enroll/${token}`, expiresAt: new Date(link.expiresAt).toISOString() };
  }

  /** The link and its user; unknown, expired, or of a deleted user: 404. */
  async resolve(token: string): Promise<Enrollment> {
    const link = typeof token === 'string' && token.startsWith(TOKEN_PREFIX.enrollment) && token.length < 200
      ? await this.links.findLive(hashSecret(token), this.clock.now())
      : null;
    const user = link ? await this.usersRepo.find(link.appId, link.userId) : null;
    if (!link || !user) throw notFound('enrollment link');
    RequestContext.assign({ appId: user.appId, actorType: 'human', actorId: user.id, userId: user.id });
    return { link, user };
  }

  async info(token: string): Promise<EnrollmentInfoDto> {
    const { link, user } = await this.resolve(token);
    const factors = await this.factors.active(user.appId, user.id);
    return {
      app: { name: await this.apps.name(user.appId) },
      user: { displayName: user.displayName },
      expiresAt: new Date(link.expiresAt).toISOString(),
      factors: factors.map((f) => ({ id: f.id, type: f.type, name: f.name, createdAt: new Date(f.createdAt).toISOString() })),
    };
  }

  async webauthnOptions(token: string, name?: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const { link, user } = await this.resolve(token);
    const options = await this.webauthn.registrationOptions(user, await this.apps.name(user.appId));
    await this.links.setChallenge(link.id, options.challenge, this.clock.now() + CHALLENGE_TTL_MS, name ?? null);
    return options;
  }

  async webauthnVerify(token: string, response: Record<string, unknown>, name?: string): Promise<FactorIdDto> {
    const { link, user } = await this.resolve(token);
    // Taken (and cleared) before verifying: a challenge serves one attempt, good or bad.
    const pending = await this.links.takeChallenge(link, this.clock.now());
    if (!pending) throw new AppError('webauthn_verification_failed', 'no pending registration: request options first', { logDetail: 'no or reused challenge' });
    const app = await this.apps.findOrThrow(user.appId);
    const factorId = await this.webauthn.verifyRegistration({
      user,
      response: response as unknown as RegistrationResponseJSON,
      expectedChallenge: pending.challenge,
      appOrigins: app.origins,
      name: name ?? pending.name ?? 'Passkey',
      onEnrolled: (m, factorId) => this.factorsService.recordEnrolled(m, { appId: user.appId, userId: user.id, id: factorId, type: 'webauthn' }),
    });
    return { factorId };
  }

  async totpCreate(token: string, name?: string): Promise<CreatedTotpDto> {
    const { user } = await this.resolve(token);
    return this.totp.create(user, await this.apps.name(user.appId), name ?? 'Authenticator app');
  }

  async totpConfirm(token: string, factorId: string, code: string): Promise<TotpConfirmedDto> {
    const { user } = await this.resolve(token);
    return this.factorsService.confirmTotpOrThrow(user.appId, user.id, factorId, code);
  }
}
