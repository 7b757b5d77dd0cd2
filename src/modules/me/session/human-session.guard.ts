import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { CSRF_HEADER, CSRF_VALUE } from '../../../common/auth/human.js';
import { AppError } from '../../../common/errors/app-error.js';
import { SAFE_METHODS } from '../../../common/json/json-bodies.js';
import { RequestContext } from '../../../common/request-context.js';
import { cookieName } from './cookie.js';
import { HumanSessionsService } from './human-sessions.service.js';

/** 403 `csrf_required` unless a state-changing request carries `X-Requested-With: mfa-proxy` (API.md v1.1). */
export function checkCsrfOrThrow(req: FastifyRequest): void {
  if (SAFE_METHODS.has(req.method)) return;
  if (req.headers[CSRF_HEADER] !== CSRF_VALUE) throw new AppError('csrf_required', `state-changing requests need the header X-Requested-With: ${CSRF_VALUE}`);
}

/**
 * The signed-in human (dashboard session cookie): `@UseGuards(HumanSessionGuard)` and
 * `@CurrentHuman() human: HumanPrincipal`. State-changing methods must carry the CSRF header (403
 * `csrf_required`, checked first: a forged request never touches the session; a body that is not
 * JSON was refused before, see common/json/json-bodies.ts); no valid session is 401 `unauthorized`. The request is audited as `actorType: "user"`.
 */
@Injectable()
export class HumanSessionGuard implements CanActivate {
  constructor(private readonly sessions: HumanSessionsService) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest>();
    checkCsrfOrThrow(req);
    const human = await this.sessions.authenticate(req.headers.cookie);
    if (!human) {
      throw new AppError('unauthorized', 'sign in first: no valid session', {
        // draft-broyer-http-cookie-auth: the credential is a cookie, obtained by signing in.
        headers: { 'WWW-Authenticate': `Cookie realm="mfa-proxy", form-action="/me/login", cookie-name="${cookieName(this.sessions.secure)}"` },
      });
    }
    req.humanPrincipal = human;
    RequestContext.assign({ appId: human.appId, actorType: 'user', actorId: human.userId, userId: human.userId });
    return true;
  }
}

/** CSRF only, for the sign-in endpoints (no session yet): a cross-site form cannot sign a victim in. */
@Injectable()
export class CsrfGuard implements CanActivate {
  canActivate(ctx: ExecutionContext): boolean {
    checkCsrfOrThrow(ctx.switchToHttp().getRequest<FastifyRequest>());
    return true;
  }
}
