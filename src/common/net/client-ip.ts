import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { isIP } from 'node:net';

const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const BRACKETED_IPV6 = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/;

/**
 * A forwarded entry as a client address: bare, or with the port some proxies append
 * (`a.b.c.d:port`, `[v6]:port`). Anything else, a zone id included (`fe80::1%<any text>` passes
 * isIP), is not one.
 */
function forwardedAddress(entry: string): string | null {
  const address = IPV4_WITH_PORT.exec(entry)?.[1] ?? BRACKETED_IPV6.exec(entry)?.[1] ?? entry;
  return isIP(address) && !address.includes('%') ? address : null;
}

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
