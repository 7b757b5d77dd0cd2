import { Injectable } from '@nestjs/common';
import { OAuthError } from '../../common/errors/app-error.js';
import { RequestContext } from '../../common/request-context.js';
import { bearerToken } from '../../common/auth/principals.js';
import { parseScope, SCOPE_PATTERN, withinBoundaries } from '../../common/scopes.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import { AgentTokensService, type AgentTokenClaims } from './agent-tokens.service.js';
import { ClientAuthService, presentedClient } from './client-auth.service.js';
import { DpopProofs } from './dpop-proofs.js';
import { OAuthGrants } from './grants.js';
import { RevocationList } from './revocation-list.js';
import { TokenInvalidError } from './token-verifier.js';
import { oauthTokenFailuresKey, oauthTokenKey } from '../rate-limit/buckets.js';
import { RateLimitService } from '../rate-limit/rate-limit.service.js';

export const TASK_ID_PATTERN = /^[A-Za-z0-9._:/-]{1,128}$/;

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  scope: string;
}

export type IntrospectionResponse = { active: false } | ({ active: true; token_type: 'Bearer' | 'DPoP' } & AgentTokenClaims);

const optionalString = (body: Record<string, unknown>, name: string): string | undefined => {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new OAuthError('invalid_request', `${name} must be a string`);
  return v;
};

@Injectable()
export class OAuthService {
  constructor(
    private readonly clients: ClientAuthService,
    private readonly tokens: AgentTokensService,
    private readonly revocations: RevocationList,
    private readonly proofs: DpopProofs,
    private readonly limits: RateLimitService,
    private readonly grants: OAuthGrants,
  ) {}

  /**
   * RFC 6749 §4.4 client credentials grant, with RFC 9449 binding when a DPoP proof is sent.
   * `ip` is the peer address: failed authentications are throttled per (claimed client, source).
   */
  async token(authorization: string | undefined, dpop: string | string[] | undefined, body: Record<string, unknown>, ip: string): Promise<TokenResponse | Record<string, unknown>> {
    const grantType = optionalString(body, 'grant_type');
    if (!grantType) throw new OAuthError('invalid_request', 'grant_type is required');
    if (grantType !== 'client_credentials') {
      const handler = this.grants.handler(grantType);
      if (!handler) throw new OAuthError('unsupported_grant_type', `supported grant types: ${['client_credentials', ...this.grants.types()].join(', ')}`);
      return handler({ body, dpop, authenticate: () => this.authenticateClient(authorization, body, ip) });
    }
    const scopeParam = optionalString(body, 'scope');
    const taskId = optionalString(body, 'task_id');
    if (taskId !== undefined && !TASK_ID_PATTERN.test(taskId)) throw new OAuthError('invalid_request', 'task_id must match [A-Za-z0-9._:/-]{1,128}');

    const agent = await this.authenticateClient(authorization, body, ip);
    // From here the request is the agent's: it is audited (and logged) under its ids.
    RequestContext.assign({ appId: agent.appId, actorType: 'agent', actorId: agent.id, agentId: agent.id, userId: agent.userId, model: agent.model, taskId: taskId ?? null });
    // Issuance is budgeted per authenticated client: nobody else can spend an agent's budget.
    await this.limits.consume('oauthToken', oauthTokenKey(agent.id));

    // RFC 6749 §3.3: the requested scope must lie within the agent's boundaries; without one, the
    // token gets them all, wildcards included (API.md v1.1: a `files:*` token covers `files:delete`).
    let scopes: string[];
    if (scopeParam === undefined || scopeParam.trim() === '') {
      scopes = [...agent.permissionBoundaries];
    } else {
      scopes = parseScope(scopeParam);
      const bad = scopes.find((s) => !SCOPE_PATTERN.test(s) || !withinBoundaries(agent.permissionBoundaries, s));
      if (bad) throw new OAuthError('invalid_scope', "a requested scope is outside the agent's permission boundaries");
    }

    const jkt = await this.proofs.jktAtTokenEndpoint(dpop, '/oauth/token');

    const issued = await this.tokens.issue({ agent, scopes, ttlSeconds: agent.tokenTtl, taskId, jkt });
    return { access_token: issued.token, token_type: jkt ? 'DPoP' : 'Bearer', expires_in: issued.expiresIn, scope: scopes.join(' ') };
  }

  /**
   * Client authentication, with failures throttled per (claimed client, source): a failed attempt
   * spends one point, atomically, and once the budget is spent failures are answered 429 instead of
   * 401. The credential is always checked first, and one that is right always passes: whoever
   * shares the agent's source address (a NAT, the load balancer in front of every instance) cannot
   * lock it out by sending wrong secrets in its name. Nothing is spent on success, nor from the
   * claimed client's issuance budget here. Client secrets are 256-bit random and assertions are
   * signatures: the budget bounds load and noise, not guessing (BUCKETS.oauthTokenFailures).
   */
  async authenticateClient(authorization: string | undefined, body: Record<string, unknown>, ip: string): Promise<AgentEntity> {
    const presented = presentedClient(authorization, body);
    try {
      return (await this.clients.authenticate(presented)).agent;
    } catch (err) {
      if (err instanceof OAuthError && err.error === 'invalid_client') await this.limits.consume('oauthTokenFailures', oauthTokenFailuresKey(this.clients.clientIdHint(presented), ip));
      throw err;
    }
  }

  /** RFC 7662: active only for a live token of one of the calling app's agents. Never consumes. */
  async introspect(appId: string, body: Record<string, unknown>): Promise<IntrospectionResponse> {
    const token = optionalString(body, 'token');
    if (!token) throw new OAuthError('invalid_request', 'token is required');
    let claims: AgentTokenClaims;
    try {
      claims = await this.tokens.verify(token);
    } catch (err) {
      if (err instanceof TokenInvalidError) return { active: false };
      throw err;
    }
    const principal = await this.tokens.principal(claims);
    if (!principal || principal.appId !== appId) return { active: false };
    return { active: true, token_type: claims.cnf ? 'DPoP' : 'Bearer', ...claims, scope: principal.scopes.join(' ') };
  }

  /**
   * RFC 7009: the agent revokes one of its own tokens. The agent authenticates as at the token
   * endpoint, or with one of its live access tokens (Bearer). Unknown or invalid tokens: 200, nothing done (§2.2); another client's token: unauthorized_client (§2.1).
   */
  async revoke(authorization: string | undefined, body: Record<string, unknown>, ip: string): Promise<void> {
    const token = optionalString(body, 'token');
    if (!token) throw new OAuthError('invalid_request', 'token is required');
    const bearer = bearerToken(authorization);
    // The same (throttled) client authentication as at the token endpoint.
    const agent = bearer !== null ? await this.bearerAgent(bearer) : await this.authenticateClient(authorization, body, ip);
    RequestContext.assign({ appId: agent.appId, actorType: 'agent', actorId: agent.id, agentId: agent.id });
    let claims: AgentTokenClaims;
    try {
      claims = await this.tokens.verify(token);
    } catch (err) {
      if (err instanceof TokenInvalidError) return; // §2.2: invalid tokens do not cause an error
      throw err;
    }
    // RFC 7009 §2.1 (API.md v1.1): a token issued to another client is refused, and stays valid.
    if (claims.client_id !== agent.id) throw new OAuthError('unauthorized_client', 'the token was not issued to this client');
    await this.revocations.revoke({ jti: claims.jti!, appId: agent.appId, agentId: agent.id, userId: claims.sub!, expiresAt: claims.exp! * 1000 });
  }

  /** The agent behind a live Bearer access token (DPoP-bound tokens must use client authentication here). */
  private async bearerAgent(accessToken: string): Promise<{ id: string; appId: string }> {
    const invalid = new OAuthError('invalid_client', 'a valid agent access token or client authentication is required');
    let claims: AgentTokenClaims;
    try {
      claims = await this.tokens.verify(accessToken);
    } catch (err) {
      if (err instanceof TokenInvalidError) throw invalid;
      throw err;
    }
    const principal = claims.cnf ? null : await this.tokens.principal(claims);
    if (!principal) throw invalid;
    return { id: principal.agentId, appId: principal.appId };
  }
}
