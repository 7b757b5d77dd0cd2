import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error.js';

/** Methods that change nothing: no CSRF header and no body rules. */
export const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * API.md conventions: JSON in and out; `application/x-www-form-urlencoded` only at `/oauth/*`
 * (RFC 6749). The service parses forms for those endpoints, so any other route would otherwise
 * take a form as if it were JSON: a state-changing request with a body that is not JSON is 415
 * `unsupported_media_type` there, before any guard or handler runs (it changes nothing).
 */
export function checkJsonBodyOrThrow(req: FastifyRequest): void {
  if (SAFE_METHODS.has(req.method) || req.url.startsWith('/oauth/')) return;
  const type = req.headers['content-type'];
  if (type === undefined) return;
  if (type.split(';')[0].trim().toLowerCase() !== 'application/json') throw new AppError('unsupported_media_type', 'send application/json');
}
