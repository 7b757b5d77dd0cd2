import { createParamDecorator, type ExecutionContext } from '@nestjs/common';

/** A signed-in human (dashboard session, API.md v1.1 "Humans"): always one user of one app. */
export interface HumanPrincipal {
  appId: string;
  userId: string;
  sessionId: string;
  /** When this session last saw a factor proof (sign-in, inline approval), epoch ms. */
  factorProvedAt: number | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    humanPrincipal?: HumanPrincipal;
  }
}

/** The human of an endpoint guarded by HumanSessionGuard (src/modules/me/session). */
export const CurrentHuman = createParamDecorator((_: unknown, ctx: ExecutionContext): HumanPrincipal => {
  const principal = ctx.switchToHttp().getRequest().humanPrincipal;
  if (!principal) throw new Error('CurrentHuman used without HumanSessionGuard');
  return principal;
});

/** The header every state-changing `/v1/me` call carries (API.md v1.1): a cross-site form cannot set it. */
export const CSRF_HEADER = 'x-requested-with';
export const CSRF_VALUE = 'mfa-proxy';
