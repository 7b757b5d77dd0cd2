import { Injectable } from '@nestjs/common';
import type { AgentEntity } from '../agents/agent.entity.js';

/** What a grant handler gets from `/oauth/token`: the raw request and a throttled client authentication. */
export interface GrantRequest {
  body: Record<string, unknown>;
  dpop: string | string[] | undefined;
  /** RFC 6749 §2.3 client authentication, throttled per (claimed client, source) as for client credentials. */
  authenticate(): Promise<AgentEntity>;
}

export type GrantHandler = (request: GrantRequest) => Promise<Record<string, unknown>>;

/**
 * Extension grants at `/oauth/token` (RFC 6749 §4.5), such as CIBA's
 * `urn:openid:params:grant-type:ciba`. Modules above `oauth` register their handler at start-up,
 * so `oauth` never imports them.
 */
@Injectable()
export class OAuthGrants {
  private readonly handlers = new Map<string, GrantHandler>();

  register(grantType: string, handler: GrantHandler): void {
    if (this.handlers.has(grantType)) throw new Error(`grant ${grantType} is registered twice`);
    this.handlers.set(grantType, handler);
  }

  handler(grantType: string): GrantHandler | undefined {
    return this.handlers.get(grantType);
  }

  types(): string[] {
    return [...this.handlers.keys()];
  }
}
