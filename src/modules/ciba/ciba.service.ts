import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { AppError, OAuthError } from '../../common/errors/app-error.js';
import { RequestContext } from '../../common/request-context.js';
import { SCOPE_PATTERN, parseScope, withinBoundaries } from '../../common/scopes.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import { KeysService } from '../keys/keys.service.js';
import { DpopProofs } from '../oauth/dpop-proofs.js';
import { OAuthGrants, type GrantRequest } from '../oauth/grants.js';
import { OAuthService } from '../oauth/oauth.service.js';
import { BackchannelPollRefused, StepUpsBackchannel, type BackchannelRedeemed, type BackchannelRequest } from '../step-ups/backchannel.js';
import { MFA_PROXY_TOKEN_TTL_S } from '../step-ups/mfa-proxy-token.js';
import type { StepUpEntity } from '../step-ups/step-up.entity.js';
import { UsersRepository } from '../users/users.repository.js';
import { parseAuthorizationDetails, type AuthorizationDetail } from './authorization-details.js';
import type { BcAuthorizeResponseDto } from './dto/ciba.dto.js';

/** CIBA Core §4: the grant type of the token request. */
export const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';
/** A sudo grant asked for by scope lasts this long from the approval (API.md v1.1). */
const SUDO_DURATION_S = 300;
const ID_TOKEN_TTL_S = 300;
const BINDING_MESSAGE_MAX = 64;
const NOTIFICATION_TOKEN_MAX = 1024;
const LOGIN_HINT_MAX = 256;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A form parameter: absent, or one string (a repeated parameter is refused, RFC 6749 §3.1). */
function param(body: Record<string, unknown>, name: string): string | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new OAuthError('invalid_request', `${name} must be given once, as a string`);
  return v;
}

/** CIBA §13: access_denied at the backchannel endpoint is 403. */
function accessDenied(description: string): OAuthError {
  const e = new OAuthError('access_denied', description);
  (e as { status: number }).status = 403;
  return e;
}

/**
 * OpenID CIBA Core 1.0, poll and ping modes, as a thin adapter over ordinary step-ups
 * (StepUpsBackchannel): `POST /oauth/bc-authorize` starts one, the CIBA grant at `/oauth/token`
 * redeems it. Errors are RFC 6749 JSON with CIBA §11/§13 codes.
 */
@Injectable()
export class CibaService implements OnModuleInit {
  constructor(
    private readonly oauth: OAuthService,
    private readonly grants: OAuthGrants,
    private readonly backchannel: StepUpsBackchannel,
    private readonly users: UsersRepository,
    private readonly keys: KeysService,
    private readonly proofs: DpopProofs,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.grants.register(CIBA_GRANT, (request) => this.token(request));
  }

  /** CIBA §7: the authentication request. */
  async authorize(authorization: string | undefined, body: Record<string, unknown>, ip: string): Promise<BcAuthorizeResponseDto> {
    // Client authentication first (CIBA §7.1: as at the token endpoint), throttled per source.
    const agent = await this.oauth.authenticateClient(authorization, body, ip);
    RequestContext.assign({ appId: agent.appId, actorType: 'agent', actorId: agent.id, agentId: agent.id, userId: agent.userId, model: agent.model });
    const request = await this.requestOrThrow(agent, body);
    try {
      const created = await this.backchannel.create(agent, 'ciba', request);
      return { auth_req_id: created.handle, expires_in: created.expiresIn, interval: created.interval };
    } catch (err) {
      throw this.asCibaError(err);
    }
  }

  /** CIBA §7.1 parameters → a backchannel request; every refusal before anything is created. */
  private async requestOrThrow(agent: AgentEntity, body: Record<string, unknown>): Promise<BackchannelRequest> {
    // Signed authentication requests (CIBA §7.1.1) and other hints are not supported: refused, never ignored.
    for (const unsupported of ['request', 'request_uri', 'id_token_hint', 'login_hint_token', 'user_code']) {
      if (body[unsupported] !== undefined) throw new OAuthError('invalid_request', `${unsupported} is not supported`);
    }
    const scope = param(body, 'scope');
    const detailsParam = param(body, 'authorization_details');
    const bindingMessage = param(body, 'binding_message');
    const loginHint = param(body, 'login_hint');
    const expiryParam = param(body, 'requested_expiry');
    const notificationToken = param(body, 'client_notification_token');

    const scopes = scope === undefined ? [] : parseScope(scope);
    // RFC 6749 §3.3: every scope token well-formed; `openid` (CIBA §7.1) asks for an ID token.
    if (scopes.some((s) => s !== 'openid' && (!SCOPE_PATTERN.test(s) || s.endsWith('*')))) throw new OAuthError('invalid_scope', 'a scope is malformed');
    const openid = scopes.includes('openid');
    const sudoScopes = scopes.filter((s) => s !== 'openid');

    // CIBA §7.1: binding_message is short and shown to the human as written.
    if (bindingMessage !== undefined && (bindingMessage.length === 0 || Array.from(bindingMessage).length > BINDING_MESSAGE_MAX || CONTROL.test(bindingMessage) || /[\ud800-\udfff]/u.test(bindingMessage))) {
      throw new OAuthError('invalid_binding_message', `binding_message must be 1 to ${BINDING_MESSAGE_MAX} printable characters`);
    }
    let expiresIn: number | undefined;
    if (expiryParam !== undefined) {
      // CIBA §7.1: a positive integer; API.md: 60..900.
      if (!/^\d{1,4}$/.test(expiryParam) || Number(expiryParam) < 60 || Number(expiryParam) > 900) throw new OAuthError('invalid_request', 'requested_expiry must be an integer from 60 to 900');
      expiresIn = Number(expiryParam);
    }
    if (notificationToken !== undefined && (notificationToken.length === 0 || notificationToken.length > NOTIFICATION_TOKEN_MAX || CONTROL.test(notificationToken))) {
      throw new OAuthError('invalid_request', `client_notification_token must be 1 to ${NOTIFICATION_TOKEN_MAX} printable characters`);
    }

    // What is asked: one action (RFC 9396), or a sudo grant for scopes; not both, not neither.
    let detail: AuthorizationDetail | null = null;
    if (detailsParam !== undefined) detail = parseAuthorizationDetails(detailsParam);
    if (detail && sudoScopes.length > 0) throw new OAuthError('invalid_request', 'send either authorization_details or scopes other than openid, not both');
    if (!detail && sudoScopes.length === 0) throw new OAuthError('invalid_request', 'send authorization_details (one mfa_proxy_action) or a scope other than openid');

    // CIBA §7.1 / API.md: the only user an agent can ask is its own.
    if (loginHint !== undefined) await this.assertOwnUserOrThrow(agent, loginHint);

    // The authority of a client-authenticated agent is its permission boundaries (Requesters.backchannel).
    if (detail && !withinBoundaries(agent.permissionBoundaries, detail.action)) throw accessDenied("the action is outside the agent's permission boundaries");
    if (sudoScopes.some((s) => !withinBoundaries(agent.permissionBoundaries, s))) throw new OAuthError('invalid_scope', "a requested scope is outside the agent's permission boundaries");

    const notification = notificationToken !== undefined && agent.cibaNotificationEndpoint ? { endpoint: agent.cibaNotificationEndpoint, token: notificationToken } : undefined;
    const common = { bindingMessage, expiresIn, notification };
    if (detail) {
      return {
        ...common, action: detail.action, resource: detail.resource, details: detail.details,
        grant: { type: 'token' }, data: { openid, authorizationDetails: [detail] },
      };
    }
    // A sudo grant: what is granted leads on the approval page; the action is the first scope asked for.
    return { ...common, action: sudoScopes[0], grant: { type: 'sudo', scopes: sudoScopes, duration: SUDO_DURATION_S }, data: { openid, scope: sudoScopes.join(' ') } };
  }

  private async assertOwnUserOrThrow(agent: AgentEntity, hint: string): Promise<void> {
    const unknown = new OAuthError('unknown_user_id', 'login_hint names no user this client may ask');
    if (hint.length === 0 || hint.length > LOGIN_HINT_MAX) throw unknown;
    if (hint === agent.userId) return;
    const user = await this.users.find(agent.appId, agent.userId);
    if (!user || user.externalId !== hint) throw unknown;
  }

  /** What creation refused, as CIBA §13 errors; anything else as it is. */
  private asCibaError(err: unknown): unknown {
    if (!(err instanceof AppError)) return err;
    switch (err.code) {
      case 'action_not_permitted':
        return accessDenied(err.detail);
      case 'no_enrolled_factor':
        // The user cannot be asked: no factor of the requested kind (CIBA §13 has no closer code).
        return accessDenied('the user has no factor to approve with');
      case 'validation_failed':
        return new OAuthError('invalid_request', err.detail);
      default:
        // 429s (too_many_pending, agent_cooldown, rate_limited) keep their status and Retry-After.
        return err;
    }
  }

  /** CIBA §10.1: the token request of poll (and ping) mode. */
  private async token(request: GrantRequest): Promise<Record<string, unknown>> {
    const agent = await request.authenticate();
    RequestContext.assign({ appId: agent.appId, actorType: 'agent', actorId: agent.id, agentId: agent.id, userId: agent.userId, model: agent.model });
    const authReqId = param(request.body, 'auth_req_id');
    if (!authReqId) throw new OAuthError('invalid_request', 'auth_req_id is required');
    // RFC 9449 §5: a proof at the token endpoint binds what this grant issues (a sudo token), checked before anything is redeemed.
    const jkt = await this.proofs.jktAtTokenEndpoint(request.dpop, '/oauth/token');
    let redeemed: BackchannelRedeemed;
    let idToken: string | undefined;
    try {
      // The ID token is signed before the grant is handed out: a failure to sign leaves the approval redeemable.
      const beforeHandOut = async (s: StepUpEntity) => {
        if (s.backchannelData?.openid === true) idToken = await this.idToken(agent, s);
      };
      redeemed = await this.backchannel.redeem(agent.appId, agent.id, 'ciba', authReqId, this.clock.now(), { jkt, beforeHandOut });
    } catch (err) {
      if (err instanceof BackchannelPollRefused) throw new OAuthError(err.code, err.description);
      throw err;
    }
    return this.tokenResponse(redeemed, jkt, idToken);
  }

  /** CIBA §10.1.1: the MFA-proxy token (grant token) or the sudo token, and the ID token signed for `openid`. */
  private tokenResponse(r: BackchannelRedeemed, jkt: string | null, idToken: string | undefined): Record<string, unknown> {
    const now = this.clock.nowSeconds();
    // The MFA-proxy token is verified by the app, never bound (RFC 9449 §5: `Bearer` says so); a sudo token is bound to the poll's DPoP key.
    const body: Record<string, unknown> = r.grant.mfaProxyToken
      ? { access_token: r.grant.mfaProxyToken, token_type: 'Bearer', expires_in: MFA_PROXY_TOKEN_TTL_S }
      : { access_token: r.grant.sudoToken, token_type: jkt ? 'DPoP' : 'Bearer', expires_in: Math.max(1, Math.floor(Date.parse(r.grant.sudoExpiresAt!) / 1000) - now), scope: r.data.scope };
    if (Array.isArray(r.data.authorizationDetails)) body.authorization_details = r.data.authorizationDetails;
    if (idToken !== undefined) body.id_token = idToken;
    return body;
  }

  /** OIDC Core §2, CIBA §10.1.1: the human who approved, for this client. */
  private idToken(agent: AgentEntity, s: StepUpEntity): Promise<string> {
    const now = this.clock.nowSeconds();
    const authTime = Math.floor((s.decidedAt ?? this.clock.now()) / 1000);
    return this.keys.sign(
      { iss: this.config.issuer, sub: s.userId, aud: agent.id, iat: now, exp: now + ID_TOKEN_TTL_S, auth_time: authTime, amr: s.amr ?? [], acr: 'mfa', step_up_id: s.id },
      'JWT',
    );
  }

}
