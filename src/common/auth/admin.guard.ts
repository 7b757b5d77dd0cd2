import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { hashSecret, safeEqual } from '../crypto/tokens.js';
import { AppError } from '../errors/app-error.js';
import { RequestContext } from '../request-context.js';
import { bearerToken } from './principals.js';

/** The operator: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
@Injectable()
export class AdminGuard implements CanActivate {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  canActivate(ctx: ExecutionContext): boolean {
    const token = bearerToken(ctx.switchToHttp().getRequest<FastifyRequest>().headers.authorization);
    if (!token || !safeEqual(hashSecret(token), this.config.adminTokenHash)) {
      throw new AppError('unauthorized', 'operator token required');
    }
    RequestContext.assign({ actorType: 'operator', actorId: 'operator' });
    return true;
  }
}
