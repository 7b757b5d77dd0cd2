import { applyDecorators, Inject, Injectable, Module, SetMetadata, UnauthorizedException, HttpException, UseGuards, type CanActivate, type DynamicModule, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { MfaProxyApp, transactionTokenOf, type MfaProxyAppOptions } from './app.js';
import { AgentAuthError, ApprovalRequiredError } from './errors.js';
import type { AgentSession, ApprovalSpec } from './types.js';

/** The injection token of the module's MfaProxyApp (also injectable as the class itself). */
export const MFA_PROXY_APP = Symbol.for('@mfa-proxy/app');
const APPROVAL_SPEC = Symbol.for('@mfa-proxy/app:approval');

interface HttpRequestLike {
  method: string;
  url: string;
  originalUrl?: string;
  protocol?: string;
  headers: Record<string, string | string[] | undefined>;
  agentSession?: AgentSession;
  approval?: unknown;
}

/** The path and query of an Express or Fastify request: the app puts its configured public origin in front (the DPoP `htu`), never `Host`. */
function requestPath(req: HttpRequestLike): string {
  return req.originalUrl ?? req.url;
}

/** Sets a header on an Express response or a Fastify reply. */
function setHeader(res: unknown, name: string, value: string): void {
  const r = res as { header?: (n: string, v: string) => unknown; setHeader?: (n: string, v: string) => unknown };
  if (typeof r.header === 'function') r.header(name, value);
  else r.setHeader?.(name, value);
}

const header = (req: HttpRequestLike, name: string) => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

function rethrow(err: unknown, res: unknown): never {
  if (err instanceof AgentAuthError) {
    setHeader(res, 'WWW-Authenticate', err.wwwAuthenticate);
    throw new UnauthorizedException({ error: err.code ?? 'unauthorized', error_description: err.message });
  }
  if (err instanceof ApprovalRequiredError) {
    if (err.wwwAuthenticate) setHeader(res, 'WWW-Authenticate', err.wwwAuthenticate);
    throw new HttpException(err.body, err.status);
  }
  throw err;
}

/** Authenticates the calling agent and sets `request.agentSession`; 401 with `WWW-Authenticate` otherwise. */
@Injectable()
export class AgentAuthGuard implements CanActivate {
  constructor(
    @Inject(MFA_PROXY_APP) private readonly app: MfaProxyApp,
    @Inject(Reflector) private readonly reflector: Reflector,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const http = context.switchToHttp();
    const req = http.getRequest<HttpRequestLike>();
    // the retry of a transaction challenge carries the transaction token: on a route with
    // @RequireApproval it authenticates its agent when it verifies, and @RequireApproval takes it
    const transactionToken = Boolean(this.reflector.get(APPROVAL_SPEC, context.getHandler())) && transactionTokenOf(header(req, 'authorization')) !== undefined;
    try {
      req.agentSession = await this.app.authenticateAgent(header(req, 'authorization'), { method: req.method, url: requestPath(req), dpop: header(req, 'dpop'), transactionToken });
      return true;
    } catch (err) {
      rethrow(err, http.getResponse());
    }
  }
}

/** The guard behind `@RequireApproval`. */
@Injectable()
export class RequireApprovalGuard implements CanActivate {
  constructor(
    @Inject(MFA_PROXY_APP) private readonly app: MfaProxyApp,
    @Inject(Reflector) private readonly reflector: Reflector,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const specOf = this.reflector.get<(req: unknown) => ApprovalSpec | Promise<ApprovalSpec>>(APPROVAL_SPEC, context.getHandler());
    if (!specOf) return true;
    const http = context.switchToHttp();
    const req = http.getRequest<HttpRequestLike>();
    try {
      req.approval = await this.app.approve(await specOf(req), { method: req.method, url: requestPath(req), headers: req.headers, ...(req.agentSession ? { agentSession: req.agentSession } : {}) });
      return true;
    } catch (err) {
      rethrow(err, http.getResponse());
    }
  }
}

/**
 * The handler runs only with a valid single-use approval of exactly the operation `specOf(req)`
 * describes (consumed before it runs; `request.approval`); else 401 with a transaction challenge,
 * or 403 when the agent did not send `Accept-Txn-Challenge: ?1`.
 */
export function RequireApproval(specOf: (req: any) => ApprovalSpec | Promise<ApprovalSpec>): MethodDecorator {
  return applyDecorators(SetMetadata(APPROVAL_SPEC, specOf), UseGuards(RequireApprovalGuard));
}

@Module({})
export class MfaProxyModule {
  /** Provides the MfaProxyApp (global), `AgentAuthGuard` and the guard of `@RequireApproval`. */
  static forRoot(options: MfaProxyAppOptions | MfaProxyApp): DynamicModule {
    const app = options instanceof MfaProxyApp ? options : new MfaProxyApp(options);
    return {
      module: MfaProxyModule,
      global: true,
      providers: [{ provide: MFA_PROXY_APP, useValue: app }, { provide: MfaProxyApp, useValue: app }, AgentAuthGuard, RequireApprovalGuard],
      exports: [MFA_PROXY_APP, MfaProxyApp, AgentAuthGuard, RequireApprovalGuard],
    };
  }
}
