import { Controller, Get, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { PAGE_HEADERS, readAsset } from '../html.js';

/** The dashboard's Web Push scripts, read once from src/web/push/ (a fixed list: no request path reaches the disk). */
const SCRIPTS = { sw: 'src/web/push/sw.js', client: 'src/web/push/push.js' } as const;
const cache = new Map<string, string>();
const script = (name: keyof typeof SCRIPTS) => {
  if (!cache.has(name)) cache.set(name, readAsset(SCRIPTS[name]));
  return cache.get(name)!;
};

/** Same rules as the pages' scripts: the pages' CSP, nosniff, no framing. */
const SCRIPT_HEADERS: Record<string, string> = {
  'Content-Type': 'text/javascript; charset=utf-8',
  'Content-Security-Policy': PAGE_HEADERS['Content-Security-Policy'],
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

@ApiExcludeController()
@Controller('me')
export class PushWebController {
  /**
   * The service worker. Served under /me so its scope can be the dashboard; `Service-Worker-Allowed`
   * lets it register with scope `/me` (the page itself) rather than only `/me/`. Revalidated on
   * every update check, so a fix reaches browsers at once.
   */
  @Get('sw.js')
  serviceWorker(@Res({ passthrough: true }) reply: FastifyReply): string {
    reply.headers({ ...SCRIPT_HEADERS, 'Service-Worker-Allowed': '/me', 'Cache-Control': 'no-cache' });
    return script('sw');
  }

  /** The client helper the dashboard page includes (`<script src="/me/push.js">`): window.mfaProxyPush. */
  @Get('push.js')
  client(@Res({ passthrough: true }) reply: FastifyReply): string {
    reply.headers({ ...SCRIPT_HEADERS, 'Cache-Control': 'public, max-age=300' });
    return script('client');
  }
}
