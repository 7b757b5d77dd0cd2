import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { transactionTokenOf, type MfaProxyApp } from './app.js';
import { AgentAuthError, ApprovalRequiredError } from './errors.js';
import type { AgentSession, Approved, ApprovalSpec, SudoGrant, SudoSpec } from './types.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `agentAuth`: the authenticated agent. */
      agentSession?: AgentSession;
      /** Set by `requireApproval`: the consumed approval of this operation. */
      approval?: Approved;
      /** Set by `requireSudo`: the recent sudo grant the agent's token carries. */
      sudo?: SudoGrant;
    }
  }
}

/**
 * The request's path and query (`originalUrl`): the app puts its configured public origin
 * (`publicUrl` or `resource`) in front of it for the DPoP `htu`; `Host` and `X-Forwarded-*` are never read.
 */
export function requestUrl(req: Request): string {
  return req.originalUrl;
}

/** Writes an AgentAuthError or ApprovalRequiredError as its HTTP answer; false for anything else. */
export function sendAuthError(res: Response, err: unknown): boolean {
  if (err instanceof AgentAuthError) {
    res.status(err.status).set('WWW-Authenticate', err.wwwAuthenticate).json({ error: err.code ?? 'unauthorized', error_description: err.message });
    return true;
  }
  if (err instanceof ApprovalRequiredError) {
    if (err.wwwAuthenticate) res.set('WWW-Authenticate', err.wwwAuthenticate);
    res.status(err.status).json(err.body);
    return true;
  }
  return false;
}

/**
 * Authenticates the agent (its token verified locally against the service's JWKS, DPoP when
 * bound) and sets `req.agentSession`; 401 with `WWW-Authenticate` otherwise. A transaction token
 * (the retry of a transaction challenge) passes only when it verifies as well (signature, `typ`,
 * `aud` = the app's `resource`, `exp`, DPoP proof when bound, its agent active): `req.agentSession`
 * is then its agent's session with no scopes, and only `requireApproval` takes the token as an
 * approval (on a route without it, the handler sees an authenticated agent and nothing more).
 */
export function agentAuth(app: MfaProxyApp): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const authorization = req.get('authorization');
    app
      .authenticateAgent(authorization, { method: req.method, url: requestUrl(req), dpop: req.get('dpop'), transactionToken: transactionTokenOf(authorization) !== undefined })
      .then((session) => {
        req.agentSession = session;
        next();
      })
      .catch((err: unknown) => {
        if (!sendAuthError(res, err)) next(err);
      });
  };
}

/**
 * Guards one operation: with a valid single-use token for exactly the operation `specOf(req)`
 * describes, consumes it, sets `req.approval` and calls `next()`; else 401 with a transaction
 * challenge (403 when the agent did not send `Accept-Txn-Challenge: ?1`).
 */
export function requireApproval(app: MfaProxyApp, specOf: (req: Request) => ApprovalSpec | Promise<ApprovalSpec>): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    Promise.resolve()
      .then(() => specOf(req))
      .then((spec) => app.approve(spec, { method: req.method, url: requestUrl(req), headers: req.headers, ...(req.agentSession ? { agentSession: req.agentSession } : {}) }))
      .then((approved) => {
        req.approval = approved;
        next();
      })
      .catch((err: unknown) => {
        if (!sendAuthError(res, err)) next(err);
      });
  };
}

/**
 * Guards an operation that needs a recent sudo grant (RFC 9470): with an agent token carrying
 * `acr: "mfa"`, every one of `scopes`, and an `auth_time` at most `maxAge` seconds old (and a
 * grant the service still holds), sets `req.sudo` and `req.agentSession` and calls `next()`; else
 * 401 `WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="mfa",
 * max_age=<maxAge>, scope="<scopes>"`, which `MfaProxyAgent.fetch` meets with a sudo step-up and one retry.
 */
export function requireSudo(app: MfaProxyApp, spec: SudoSpec | ((req: Request) => SudoSpec | Promise<SudoSpec>)): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    Promise.resolve()
      .then(() => (typeof spec === 'function' ? spec(req) : spec))
      .then((s) => app.sudo(s, { method: req.method, url: requestUrl(req), headers: req.headers, ...(req.agentSession ? { agentSession: req.agentSession } : {}) }))
      .then((grant) => {
        req.sudo = grant;
        req.agentSession = grant.session;
        next();
      })
      .catch((err: unknown) => {
        if (!sendAuthError(res, err)) next(err);
      });
  };
}
