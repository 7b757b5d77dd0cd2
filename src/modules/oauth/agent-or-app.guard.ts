import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { TOKEN_PREFIX } from '../../common/crypto/tokens.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { AgentGuard } from './agent.guard.js';

/** Endpoints open to an agent (its access token) or to its app (API key): the credential's form picks the guard. */
@Injectable()
export class AgentOrAppGuard implements CanActivate {
  private readonly appKey = new RegExp(`^bearer ${TOKEN_PREFIX.appKey}`, 'i');

  constructor(
    private readonly agents: AgentGuard,
    private readonly apps: AppKeyGuard,
  ) {}

  canActivate(ctx: ExecutionContext): Promise<boolean> {
    const auth = ctx.switchToHttp().getRequest<FastifyRequest>().headers.authorization ?? '';
    return this.appKey.test(auth) ? this.apps.canActivate(ctx) : this.agents.canActivate(ctx);
  }
}
