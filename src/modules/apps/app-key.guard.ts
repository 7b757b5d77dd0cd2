import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { MalformedBasicError, parseBasic } from '../../common/auth/basic.js';
import { bearerToken, parseAuthorization, type AppPrincipal } from '../../common/auth/principals.js';
import { safeEqual } from '../../common/crypto/tokens.js';
import { AppError, OAuthError } from '../../common/errors/app-error.js';
import { isId } from '../../common/ids.js';
import { RequestContext } from '../../common/request-context.js';
import { AppsService } from './apps.service.js';

const REALM = 'realm="mfa-proxy"';

function admit(req: FastifyRequest, principal: AppPrincipal): true {
  req.appPrincipal = principal;
  RequestContext.assign({ appId: principal.appId, actorType: 'app', actorId: principal.appId });
  return true;
}

/** An app: `Authorization: Bearer <app API key>`. Puts the app principal on the request. */
@Injectable()
export class AppKeyGuard implements CanActivate {
  constructor(private readonly apps: AppsService) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest>();
    const token = bearerToken(req.headers.authorization);
    const principal = token ? await this.apps.authenticate(token) : null;
    if (!principal) {
      // RFC 6750 §3.1: `error` only when a credential was sent and was bad.
      const challenge = req.headers.authorization ? `Bearer ${REALM}, error="invalid_token"` : `Bearer ${REALM}`;
      throw new AppError('unauthorized', 'a valid app API key is required', { headers: { 'WWW-Authenticate': challenge } });
    }
    return admit(req, principal);
  }
}

/**
 * An app as an OAuth client at the introspection endpoint (RFC 7662 §2.1, API.md v1.1):
 * `client_secret_basic` or `client_secret_post` with the app id as client id and one of its API
 * keys as secret, or `Authorization: Bearer <API key>`. The key is found by its hash through the
 * same lookup as AppKeyGuard, and must belong to the named app.
 */
@Injectable()
export class AppClientGuard implements CanActivate {
  constructor(private readonly apps: AppsService) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest>();
    const authorization = req.headers.authorization;
    const body = req.body && typeof req.body === 'object' && !Array.isArray(req.body) ? (req.body as Record<string, unknown>) : {};
    const scheme = parseAuthorization(authorization)?.scheme;
    let basic: { id: string; secret: string } | null;
    try {
      basic = parseBasic(authorization);
    } catch (err) {
      if (err instanceof MalformedBasicError) throw refuse('malformed Basic credentials', 'basic');
      throw err;
    }
    const bearer = scheme === 'bearer' ? bearerToken(authorization) : null;
    const posted = body.client_secret !== undefined;
    // RFC 6749 §2.3: exactly one authentication method per request.
    if ([basic, bearer, posted ? true : null].filter((m) => m !== null).length > 1) {
      throw new OAuthError('invalid_request', 'use exactly one client authentication method');
    }
    if (bearer !== null) {
      const principal = await this.apps.authenticate(bearer);
      if (!principal) throw refuse('a valid app API key is required', 'bearer');
      return admit(req, principal);
    }
    if (basic || posted) {
      const id = basic ? basic.id : body.client_id;
      const secret = basic ? basic.secret : body.client_secret;
      if (basic && body.client_id !== undefined && body.client_id !== basic.id) throw new OAuthError('invalid_request', 'client_id does not match the Basic credentials');
      if (typeof id !== 'string' || typeof secret !== 'string') throw refuse('client_id and client_secret must be strings', 'basic');
      const principal = await this.apps.authenticate(secret);
      // The API key names its app; the client id must be that app (ids are not secret, but compare evenly anyway).
      if (!principal || !isId('app', id) || !safeEqual(principal.appId, id)) throw refuse('client authentication failed', 'basic');
      return admit(req, principal);
    }
    if (scheme === 'basic' || scheme === 'bearer') throw refuse(`malformed ${scheme === 'basic' ? 'Basic' : 'Bearer'} credentials`, scheme);
    if (scheme !== undefined) throw refuse('unsupported authorization scheme; use Basic or Bearer', 'other');
    throw refuse('client authentication required: the app id and an API key (Basic or client_secret_post), or Bearer <API key>', 'none');
  }
}

/**
 * RFC 6749 §5.2 invalid_client, with a challenge naming both accepted schemes; RFC 6750 §3.1:
 * `error="invalid_token"` on the Bearer challenge only when a bad Bearer credential was sent.
 */
function refuse(description: string, sent: 'none' | 'basic' | 'bearer' | 'other'): OAuthError {
  const bearer = sent === 'bearer' ? `Bearer ${REALM}, error="invalid_token"` : `Bearer ${REALM}`;
  return new OAuthError('invalid_client', description, { 'WWW-Authenticate': `Basic ${REALM}, ${bearer}` });
}
