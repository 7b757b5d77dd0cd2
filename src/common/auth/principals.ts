import { createParamDecorator, type ExecutionContext } from '@nestjs/common';

/** An app authenticated by its API key. */
export interface AppPrincipal {
  appId: string;
  keyId: string;
}

/** An agent authenticated by its access token. */
export interface AgentPrincipal {
  appId: string;
  userId: string;
  agentId: string;
  model: string;
  taskId: string | null;
  scopes: string[];
  /** The agent's current permission boundaries. */
  boundaries: string[];
  /** The agent's request budget per minute. */
  rateLimitPerMinute: number;
  jti: string;
  exp: number;
  /** JWK thumbprint the token is bound to (RFC 9449), if any. */
  jkt: string | null;
  /** Set on worker tokens (and sudo tokens a worker obtained): the task (tsk_...) that bounds them. */
  workerTaskId: string | null;
  /** Set on sudo tokens: the step-up that elevated this token. */
  stepUpId: string | null;
  acr: string | null;
}

/** Endpoints open to an agent or to its app (tasks, step-ups): who is calling. */
export type Caller = { kind: 'agent'; agent: AgentPrincipal } | { kind: 'app'; app: AppPrincipal };

declare module 'fastify' {
  interface FastifyRequest {
    appPrincipal?: AppPrincipal;
    agentPrincipal?: AgentPrincipal;
  }
}

export const CurrentApp = createParamDecorator((_: unknown, ctx: ExecutionContext): AppPrincipal => {
  const principal = ctx.switchToHttp().getRequest().appPrincipal;
  if (!principal) throw new Error('CurrentApp used without AppKeyGuard');
  return principal;
});

export const CurrentAgent = createParamDecorator((_: unknown, ctx: ExecutionContext): AgentPrincipal => {
  const principal = ctx.switchToHttp().getRequest().agentPrincipal;
  if (!principal) throw new Error('CurrentAgent used without AgentGuard');
  return principal;
});

/** The caller of an endpoint guarded by AgentOrAppGuard. */
export const CurrentCaller = createParamDecorator((_: unknown, ctx: ExecutionContext): Caller => {
  const req = ctx.switchToHttp().getRequest();
  if (req.agentPrincipal) return { kind: 'agent', agent: req.agentPrincipal };
  if (req.appPrincipal) return { kind: 'app', app: req.appPrincipal };
  throw new Error('CurrentCaller used without AgentOrAppGuard');
});

export const callerAppId = (c: Caller): string => (c.kind === 'agent' ? c.agent.appId : c.app.appId);

/** `Authorization: <scheme> <credentials>` split (scheme lower-cased, RFC 9110 §11.1); credentials null when absent or over 8 KiB. */
export function parseAuthorization(header: string | undefined): { scheme: string; credentials: string | null } | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  if (space < 0) return { scheme: header.toLowerCase(), credentials: null };
  const credentials = header.slice(space + 1).trim();
  return { scheme: header.slice(0, space).toLowerCase(), credentials: credentials.length > 0 && credentials.length <= 8192 ? credentials : null };
}

/** The credentials of a request under one scheme (default Bearer), or null. */
export function bearerToken(authorization: string | undefined, scheme = 'Bearer'): string | null {
  const parsed = parseAuthorization(authorization);
  return parsed && parsed.scheme === scheme.toLowerCase() ? parsed.credentials : null;
}
