import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../common/errors/app-error.js';
import { RequestContext } from '../../common/request-context.js';
import { parseAuthorization } from '../../common/auth/principals.js';
import { agentRequestsKey } from '../rate-limit/buckets.js';
import { RateLimitService, rateLimitHeaders } from '../rate-limit/rate-limit.service.js';
import { AgentTokensService } from './agent-tokens.service.js';
import { DPOP_ALGS, DpopError } from './dpop.js';
import { DpopProofs } from './dpop-proofs.js';
import { TokenInvalidError } from './token-verifier.js';

const REALM = 'realm="mfa-proxy"';
/** RFC 9449 §7.1: `algs` lists exactly the DPoP proof algorithms we accept. */
const DPOP_CHALLENGE = `DPoP ${REALM}, algs="${DPOP_ALGS.join(' ')}"`;

/** What went wrong, for the challenge: nothing sent, a bad token (on the scheme used), or a bad DPoP proof. */
type Failure = { kind: 'none' } | { kind: 'token'; scheme: 'bearer' | 'dpop' } | { kind: 'proof' };

/**
 * The challenges of an agent endpoint (RFC 6750 §3, RFC 9449 §7.1): both schemes are offered;
 * `error` appears only when a credential was sent, on the scheme it was sent with.
 */
export function agentChallenge(failure: Failure): string {
  const bearerError = failure.kind === 'token' && failure.scheme === 'bearer';
  const dpopError = failure.kind === 'proof' ? 'invalid_dpop_proof' : failure.kind === 'token' && failure.scheme === 'dpop' ? 'invalid_token' : null;
  return [
    bearerError ? `Bearer ${REALM}, error="invalid_token"` : `Bearer ${REALM}`,
    dpopError ? `DPoP ${REALM}, error="${dpopError}", algs="${DPOP_ALGS.join(' ')}"` : DPOP_CHALLENGE,
  ].join(', ');
}

function unauthorized(detail: string, failure: Failure): AppError {
  return new AppError(failure.kind === 'proof' ? 'invalid_dpop_proof' : 'unauthorized', detail, { headers: { 'WWW-Authenticate': agentChallenge(failure) } });
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
    // RFC 6750 §3.1: a request without a (usable) agent credential gets a challenge without `error`.
    if (!token || (scheme !== 'bearer' && scheme !== 'dpop')) throw unauthorized('an agent access token is required', { kind: 'none' });
    const bad: Failure = { kind: 'token', scheme };

    let claims;
    try {
      claims = await this.tokens.verify(token);
    } catch (err) {
      if (err instanceof TokenInvalidError) throw unauthorized('the access token is invalid or expired', bad);
      throw err;
    }
    if (claims.cnf?.jkt) {
      // RFC 9449 §7.1: a DPoP-bound token is only accepted with the DPoP scheme and a fresh proof.
      if (scheme !== 'dpop') throw unauthorized('this token is DPoP-bound: use the DPoP scheme with a proof', bad);
      await this.checkProof(req, token, claims.cnf.jkt);
    } else if (scheme !== 'bearer') {
      throw unauthorized('this token is not DPoP-bound: use the Bearer scheme', bad);
    }

    const principal = await this.tokens.principal(claims);
    if (!principal) throw unauthorized('the token was revoked, or its agent is suspended or revoked', bad);
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
      if (err instanceof DpopError) throw unauthorized(err.message, { kind: 'proof' });
      throw new AppError('service_unavailable', 'replay protection unavailable', { cause: err });
    }
  }
}
