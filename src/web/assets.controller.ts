import { Controller, Get, Header, Param, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { ApiExcludeController } from '@nestjs/swagger';
import { notFound } from '../common/errors/app-error.js';
import { readAsset } from './html.js';

/** Static files of the human pages, read once. A fixed list: no path from the request reaches the disk. */
const FILES: Record<string, { path: string; type: string }> = {
  'page.css': { path: 'public/page.css', type: 'text/css; charset=utf-8' },
  'enroll.js': { path: 'public/enroll.js', type: 'text/javascript; charset=utf-8' },
  'approve.js': { path: 'public/approve.js', type: 'text/javascript; charset=utf-8' },
  'signin.js': { path: 'public/signin.js', type: 'text/javascript; charset=utf-8' },
  'dashboard.js': { path: 'public/dashboard.js', type: 'text/javascript; charset=utf-8' },
  'dashboard.css': { path: 'public/dashboard.css', type: 'text/css; charset=utf-8' },
  'simplewebauthn-browser.js': { path: 'node_modules/@simplewebauthn/browser/dist/bundle/index.umd.min.js', type: 'text/javascript; charset=utf-8' },
};
const cache = new Map<string, string>();

@ApiExcludeController()
@Controller('assets')
export class AssetsController {
  @Get(':name')
  @Header('Cache-Control', 'public, max-age=300')
  @Header('X-Content-Type-Options', 'nosniff')
  asset(@Param('name') name: string, @Res({ passthrough: true }) reply: FastifyReply): string {
    const file = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
    if (!file) throw notFound('asset');
    if (!cache.has(name)) {
      try {
        cache.set(name, readAsset(file.path));
      } catch {
        throw notFound('asset');
      }
    }
    reply.header('Content-Type', file.type);
    return cache.get(name)!;
  }
}
