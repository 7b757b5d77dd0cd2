import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../common/errors/app-error.js';
import { RequestContext } from '../../common/request-context.js';
import { parseAuthorization } from '../../common/auth/principals.js';
import { agentRequestsKey } from '../rate-limit/buckets.js';
import { RateLimitService, rateLimitHeaders } from '../rate-limit/rate-limit.service.js';
import { AgentTokensService } from './agent-tokens.service.js';
import { DpopError } from './dpop.js';
import { DpopProofs } from './dpop-proofs.js';
import { TokenInvalidError } from './token-verifier.js';

const CHALLENGE = 'Bearer realm="mfa-proxy", error="invalid_token", DPoP algs="ES256 EdDSA"';

function unauthorized(detail: string, dpop = false): AppError {
  return new AppError(dpop ? 'invalid_dpop_proof' : 'unauthorized', detail, { headers: { 'WWW-Authenticate': CHALLENGE } });
}

/**
 * The one guard of agent endpoints: `Authorization: Bearer <token>`, or `DPoP <token>` with a
 * proof for DPoP-bound tokens. Puts the principal on the request and in the log context.
 */
@Injectable()
export class AgentGuard implements CanActivate {
  constructor(
    private readonly tokens: AgentTokensService,
    private readonly proofs: DpopProofs,
    private readonly limits: RateLimitService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest>();
    const { scheme = '', credentials: token = null } = parseAuthorization(req.headers.authorization) ?? {};
    if (!token || (scheme !== 'bearer' && scheme !== 'dpop')) throw unauthorized('an agent access token is required');

    let claims;
    try {
      claims = await this.tokens.verify(token);
    } catch (err) {
      if (err instanceof TokenInvalidError) throw unauthorized('the access token is invalid or expired');
      throw err;
    }
    if (claims.cnf?.jkt) {
      // RFC 9449 §7.1: a DPoP-bound token is only accepted with the DPoP scheme and a fresh proof.
      if (scheme !== 'dpop') throw unauthorized('this token is DPoP-bound: use the DPoP scheme with a proof');
      await this.checkProof(req, token, claims.cnf.jkt);
    } else if (scheme !== 'bearer') {
      throw unauthorized('this token is not DPoP-bound: use the Bearer scheme');
    }

    const principal = await this.tokens.principal(claims);
    if (!principal) throw unauthorized('the token was revoked, or its agent is suspended or revoked');
    req.agentPrincipal = principal;
    RequestContext.assign({
      appId: principal.appId,
      actorType: 'agent',
      actorId: principal.agentId,
      agentId: principal.agentId,
      userId: principal.userId,
      model: principal.model,
      taskId: principal.taskId,
    });
    // Every agent-authenticated request spends from the agent's own per-minute budget.
    const spent = await this.limits.consume('agentRequests', agentRequestsKey(principal.agentId), principal.rateLimitPerMinute);
    if (spent) ctx.switchToHttp().getResponse<FastifyReply>().headers(rateLimitHeaders(spent));
    return true;
  }

  private async checkProof(req: FastifyRequest, token: string, jkt: string): Promise<void> {
    try {
      const proof = await this.proofs.verify(req.headers.dpop, req.method, req.url, token);
      // §4.3 check 12: the proof is signed by the key the token is bound to.
      if (proof.jkt !== jkt) throw new DpopError('DPoP proof key does not match the token binding');
    } catch (err) {
      if (err instanceof DpopError) throw unauthorized(err.message, true);
      throw new AppError('service_unavailable', 'replay protection unavailable', { cause: err });
    }
  }
}
