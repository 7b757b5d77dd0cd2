import type { Session } from '@auth/core/types';
import type { MfaProxyApp } from './app.js';
import { AgentAuthError, ApprovalRequiredError } from './errors.js';
import type { ActionDescriptor, AgentSession, Approved } from './types.js';

/** An AgentSession is an Auth.js session (`user`, `expires`) with the agent's metadata. */
export type AgentAuthSession = Session & AgentSession;

/**
 * For Auth.js (`@auth/core`) apps: the AgentSession of a request made by an agent (its token
 * verified locally, DPoP when bound), or null when the request carries no valid agent token,
 * for `callbacks.session` to merge.
 */
export async function agentSessionFromRequest(app: MfaProxyApp, request: Request): Promise<AgentAuthSession | null> {
  const authorization = request.headers.get('authorization');
  if (!authorization) return null;
  try {
    // the DPoP htu is the app's configured origin (publicUrl or resource) with this path: request.url's host came from the client
    return await app.authenticateAgent(authorization, { method: request.method, url: pathOf(request), dpop: request.headers.get('dpop') });
  } catch (err) {
    if (err instanceof AgentAuthError) return null;
    throw err;
  }
}

/**
 * Explicit consent before a destructive action: resolves to the consumed approval when the
 * request carries a valid single-use token for exactly this action, else to the `Response` to
 * send (401 with the transaction challenge, 403 without `Accept-Txn-Challenge: ?1`, or 401 for a
 * bad agent credential).
 */
export async function authorizeDestructiveAction(app: MfaProxyApp, request: Request, action: ActionDescriptor & { reason?: string }): Promise<Approved | Response> {
  try {
    return await app.approve({ ...action, reason: action.reason ?? `explicit consent to ${action.action}` }, { method: request.method, url: pathOf(request), headers: request.headers });
  } catch (err) {
    if (err instanceof AgentAuthError) {
      return Response.json({ error: err.code ?? 'unauthorized', error_description: err.message }, { status: 401, headers: { 'www-authenticate': err.wwwAuthenticate } });
    }
    if (err instanceof ApprovalRequiredError) {
      return Response.json(err.body, { status: err.status, headers: err.wwwAuthenticate ? { 'www-authenticate': err.wwwAuthenticate } : {} });
    }
    throw err;
  }
}

/** The request's path and query (its origin comes from the Host header, which the client chose). */
function pathOf(request: Request): string {
  const u = new URL(request.url);
  return `${u.pathname}${u.search}`;
}
