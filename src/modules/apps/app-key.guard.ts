import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { bearerToken } from '../../common/auth/principals.js';
import { AppError } from '../../common/errors/app-error.js';
import { RequestContext } from '../../common/request-context.js';
import { AppsService } from './apps.service.js';

/** An app: `Authorization: Bearer <app API key>`. Puts the app principal on the request. */
@Injectable()
export class AppKeyGuard implements CanActivate {
  constructor(private readonly apps: AppsService) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest>();
    const token = bearerToken(req.headers.authorization);
    const principal = token ? await this.apps.authenticate(token) : null;
    if (!principal) throw new AppError('unauthorized', 'a valid app API key is required');
    req.appPrincipal = principal;
    RequestContext.assign({ appId: principal.appId, actorType: 'app', actorId: principal.appId });
    return true;
  }
}
