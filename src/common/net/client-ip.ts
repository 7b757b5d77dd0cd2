import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { forwardedAddress } from './proxies.js';

/**
 * The client's address: the TCP peer, or for a request from a TRUST_PROXY proxy the client its
 * X-Forwarded-For names. Should that entry not be an address (a proxy passing on what the client
 * wrote instead of appending what it saw), the proxy's own address: never text the client chose.
 */
export function clientIp(request: FastifyRequest): string {
  const peer = request.raw.socket?.remoteAddress ?? '';
  const ip = request.ip;
  // Without TRUST_PROXY (or from a peer not listed) request.ip is the peer: nothing to check.
  if (ip === peer) return ip;
  return (typeof ip === 'string' && forwardedAddress(ip)) || peer;
}

/** `clientIp` as a handler parameter (per-source budgets). */
export const ClientIp = createParamDecorator((_: unknown, ctx: ExecutionContext): string => clientIp(ctx.switchToHttp().getRequest<FastifyRequest>()));
