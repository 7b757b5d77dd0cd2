import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { AppError, OAuthError } from '../../common/errors/app-error.js';
import { RequestContext } from '../../common/request-context.js';
import { withinBoundaries } from '../../common/scopes.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import { AppsService } from '../apps/apps.service.js';
import { DpopProofs } from '../oauth/dpop-proofs.js';
import { OAuthService } from '../oauth/oauth.service.js';
import { BackchannelPollRefused, StepUpsBackchannel } from '../step-ups/backchannel.js';
import { TXN_TOKEN_TTL_S, txnDataOf, type TxnStepUpData } from '../step-ups/txn-token.js';
import { ChallengeRefused, verifyChallengeOrThrow, type VerifiedChallenge } from './challenge.js';
import { TxnChallengesRepository } from './txn-challenges.repository.js';

export const TXN_AUTHORIZATION_PATH = '/oauth/txn-authorization';
/** Expired challenges are forgotten this long after their `exp` (they are refused for it anyway). */
const PURGE_GRACE_MS = 60_000;
const PURGE_EVERY_MS = 60_000;

/** draft-rosomakho-oauth-txn-challenge-00 §5.2. */
export interface TxnAuthorizationPending {
  transaction_authorization_id: string;
  expires_in: number;
  interval: number;
}

/** draft-rosomakho-oauth-txn-challenge-00 §5.4 (RFC 6749 §5.1 with RFC 9396 §7). */
export interface TxnAuthorizationToken {
  access_token: string;
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  authorization_details: Record<string, unknown>[];
}

const param = (body: Record<string, unknown>, name: string): string | undefined => {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new OAuthError('invalid_request', `${name} must be a non-empty string`);
  return v;
};

/**
 * The Transaction Authorization Challenge endpoint (draft-rosomakho-oauth-txn-challenge-00 §5): a
 * thin adapter over ordinary step-ups. A verified, unused challenge of the agent's own app becomes
 * a step-up (through the step-ups backchannel, channel `txn`) that shows the human what the app
 * signed; the poll hands out, once, an access token for the app's resource bound to the `txn`.
 */
@Injectable()
export class TxnAuthorizationService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(TxnAuthorizationService.name);
  private purger: NodeJS.Timeout | null = null;

  constructor(
    private readonly oauth: OAuthService,
    private readonly apps: AppsService,
    private readonly backchannel: StepUpsBackchannel,
    private readonly challenges: TxnChallengesRepository,
    private readonly proofs: DpopProofs,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.purger = setInterval(() => void this.challenges.purgeExpired(this.clock.now() - PURGE_GRACE_MS, 500).catch((err) => this.logger.warn({ err }, 'challenge purge failed')), PURGE_EVERY_MS);
    this.purger.unref();
  }

  onApplicationShutdown(): void {
    if (this.purger) clearInterval(this.purger);
  }

  /** `POST /oauth/txn-authorization`: a challenge (§5.1) or a poll (§5.3), after client authentication (§5.1, RFC 6749 §2.3). */
  async handle(authorization: string | undefined, dpop: string | string[] | undefined, body: Record<string, unknown>, ip: string): Promise<TxnAuthorizationPending | TxnAuthorizationToken> {
    const challenge = param(body, 'transaction_challenge');
    const id = param(body, 'transaction_authorization_id');
    if ((challenge === undefined) === (id === undefined)) throw new OAuthError('invalid_request', 'send either transaction_challenge or transaction_authorization_id');
    const agent = await this.oauth.authenticateClient(authorization, body, ip);
    RequestContext.assign({ appId: agent.appId, actorType: 'agent', actorId: agent.id, agentId: agent.id, userId: agent.userId, model: agent.model });
    return challenge !== undefined ? this.start(agent, challenge) : this.poll(agent, id!, dpop);
  }

  /** §4.6 and §5.2: validate the challenge; any failure starts nothing and changes nothing. */
  private async start(agent: AgentEntity, jws: string): Promise<TxnAuthorizationPending> {
    let c: VerifiedChallenge;
    try {
      c = await verifyChallengeOrThrow(jws, {
        appByResource: (resource) => this.apps.findByResource(resource),
        issuer: this.config.issuer,
        nowSeconds: this.clock.nowSeconds(),
        agentId: agent.id,
      });
    } catch (err) {
      if (err instanceof ChallengeRefused) throw new OAuthError(err.error, err.description);
      throw err;
    }
    // §4.6 "willing to issue access tokens for the protected resource": only its own app's. The
    // step-up, the human and the token all live in the agent's tenant; no challenge crosses tenants.
    if (c.appId !== agent.appId) throw new OAuthError('invalid_request', "the challenge's iss is not a registered resource");
    // §4.6 "the client is permitted to request transaction authorization for the challenged operation".
    const detail = c.authorizationDetail;
    if (!withinBoundaries(agent.permissionBoundaries, detail.action)) throw new OAuthError('access_denied', "the action is outside the agent's permission boundaries");
    // §4.2.2 jti: a challenge starts at most one step-up, on every instance (the claim's primary key decides).
    const claimed = await this.challenges.claim({ appId: agent.appId, jti: c.jti, agentId: agent.id, expiresAt: c.exp * 1000, createdAt: this.clock.now() });
    if (!claimed) throw new OAuthError('invalid_request', 'the challenge was already used');
    const data: TxnStepUpData = { txn: c.txn, audience: c.resource, reason: c.reason, challengeJti: c.jti, authorizationDetails: [{ ...detail }] };
    let created;
    try {
      created = await this.backchannel.create(agent, 'txn', {
        action: detail.action,
        ...(detail.resource !== undefined ? { resource: detail.resource } : {}),
        ...(detail.details !== undefined ? { details: detail.details } : {}),
        data: { ...data },
      });
    } catch (err) {
      // Nothing was started: the challenge may be presented again.
      await this.challenges.release(agent.appId, c.jti);
      if (err instanceof AppError && err.code === 'action_not_permitted') throw new OAuthError('access_denied', err.detail);
      throw err;
    }
    await this.challenges.attach(agent.appId, c.jti, created.stepUpId);
    return { transaction_authorization_id: created.handle, expires_in: created.expiresIn, interval: created.interval };
  }

  /** §5.3 and §5.4: poll as CIBA does; on approval the token, exactly once, bound to the poll's DPoP key if it sent a proof. */
  private async poll(agent: AgentEntity, id: string, dpop: string | string[] | undefined): Promise<TxnAuthorizationToken> {
    const jkt = await this.proofs.jktAtTokenEndpoint(dpop, TXN_AUTHORIZATION_PATH);
    let redeemed;
    try {
      redeemed = await this.backchannel.redeem(agent.appId, agent.id, 'txn', id, undefined, { jkt });
    } catch (err) {
      if (err instanceof BackchannelPollRefused) throw new OAuthError(err.code, err.code === 'invalid_grant' ? 'unknown or already redeemed transaction_authorization_id' : err.description);
      throw err;
    }
    const token = redeemed.grant.mfaProxyToken;
    const data = txnDataOf(redeemed.stepUp);
    if (!token || !data) throw new OAuthError('server_error', 'the approval could not be handed out');
    return { access_token: token, token_type: jkt ? 'DPoP' : 'Bearer', expires_in: TXN_TOKEN_TTL_S, authorization_details: data.authorizationDetails };
  }
}
