import { ArgumentsHost, Catch, HttpException, Logger, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, OAuthError } from './app-error.js';
import { ERROR_TITLE, type ErrorCode } from './error-codes.js';

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  [extension: string]: unknown;
}

/** Fastify's own errors (body parsing, limits) mapped to our codes. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'validation_failed',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
};

const STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'validation_failed',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'service_unavailable',
};

function detailOf(exception: HttpException): string {
  const body = exception.getResponse();
  if (typeof body === 'string') return body;
  const message = (body as { message?: unknown }).message;
  if (Array.isArray(message)) return message.join('; ');
  if (typeof message === 'string') return message;
  return exception.message;
}

/** Turns anything thrown into an AppError (or OAuthError), hiding what the client must not see. */
export function toAppError(exception: unknown): AppError | OAuthError {
  if (exception instanceof AppError || exception instanceof OAuthError) return exception;
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    const code = STATUS_CODES[status] ?? (status >= 500 ? 'internal_error' : 'validation_failed');
    const detail = status >= 500 ? ERROR_TITLE.internal_error : detailOf(exception);
    if (status === 400 && /JSON/.test(detail)) return new AppError('malformed_json', 'request body is not valid JSON');
    return new AppError(code, code === 'not_found' && /^Cannot /.test(detail) ? 'no such endpoint' : detail);
  }
  const err = exception as { code?: string; statusCode?: number; message?: string } | undefined;
  if (err?.code && FASTIFY_CODES[err.code]) {
    const code = FASTIFY_CODES[err.code];
    const detail =
      code === 'payload_too_large' ? 'request body exceeds 64 KiB' :
      code === 'malformed_json' ? 'request body is not valid JSON' :
      code === 'unsupported_media_type' ? 'send application/json' : 'invalid request';
    return new AppError(code, detail);
  }
  if (exception instanceof SyntaxError || (err?.statusCode === 400 && err?.message)) {
    return new AppError('malformed_json', 'request body could not be parsed');
  }
  if (err?.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return new AppError(STATUS_CODES[err.statusCode] ?? 'validation_failed', 'invalid request');
  }
  // A value PostgreSQL cannot store (NUL in text: 22021, 22P05) that validation let through is still bad input, not a 500.
  const driverCode = (exception as { driverError?: { code?: string } } | undefined)?.driverError?.code;
  if (driverCode === '22021' || driverCode === '22P05') return new AppError('validation_failed', 'a value contains characters that cannot be stored (e.g. NUL)', { cause: exception });
  if (databaseUnavailable(exception)) return new AppError('service_unavailable', 'the database is busy or unreachable; try again shortly', { cause: exception, headers: { 'Retry-After': '1' } });
  return new AppError('internal_error', ERROR_TITLE.internal_error, { cause: exception });
}

/**
 * The database could not be reached in time, so nothing was done: node-pg's pool found no free
 * connection within DATABASE_POOL_TIMEOUT_MS (its errors carry no code, only these messages), the
 * server refused the connection, or it is starting or shutting down (57P01, 57P03).
 */
function databaseUnavailable(exception: unknown): boolean {
  const err = ((exception as { driverError?: unknown } | undefined)?.driverError ?? exception) as { code?: string; message?: string } | undefined;
  if (err?.code === 'ECONNREFUSED' || err?.code === '57P01' || err?.code === '57P03') return true;
  return err?.message === 'timeout exceeded when trying to connect' || err?.message === 'Connection terminated due to connection timeout';
}

function isOAuthPath(url: string): boolean {
  return url.startsWith('/oauth/');
}

export interface RenderedError {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

/**
 * The response for an error: RFC 9457 problem+json on /v1 and the pages, RFC 6749 §5.2 JSON on
 * /oauth. Used by the exception filter and by the handlers of errors raised before routing.
 */
export function renderError(url: string, exception: unknown): RenderedError {
  const error = toAppError(exception);
  if (error instanceof OAuthError || isOAuthPath(url)) {
    const oauth = error instanceof OAuthError ? error : asOAuth(error);
    const headers: Record<string, string> = { ...oauth.headers, 'Cache-Control': 'no-store', 'Content-Type': 'application/json' };
    if (oauth.status === 401 && !Object.keys(headers).some((h) => h.toLowerCase() === 'www-authenticate')) headers['WWW-Authenticate'] = 'Basic realm="mfa-proxy"';
    return { status: oauth.status, headers, body: { error: oauth.error, error_description: oauth.description } };
  }
  const headers: Record<string, string> = { ...(error.options.headers ?? {}), 'Content-Type': 'application/problem+json' };
  if (error.status === 401 && !Object.keys(headers).some((h) => h.toLowerCase() === 'www-authenticate')) headers['WWW-Authenticate'] = 'Bearer realm="mfa-proxy"';
  const problem: Problem = {
    ...(error.options.extensions ?? {}),
    type: `https://mfa-proxy.dev/problems/${error.code.replace(/_/g, '-')}`,
    title: error.title,
    status: error.status,
    detail: error.detail,
    code: error.code,
  };
  return { status: error.status, headers, body: problem };
}

function asOAuth(error: AppError): OAuthError {
  if (error.status === 401) return new OAuthError('invalid_client', error.detail);
  if (error.status >= 500) return new OAuthError('server_error', error.detail);
  const e = new OAuthError('invalid_request', error.detail, error.options.headers ?? {});
  // Keep 404/413/415/429 statuses meaningful even in the OAuth error format.
  (e as { status: number }).status = error.status;
  return e;
}

/** Writes every error of a routed request (see renderError); 5xx are logged without the URL. */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly logger = new Logger('http');

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const reply = ctx.getResponse<FastifyReply>();
    const request = ctx.getRequest<FastifyRequest>();
    const error = toAppError(exception);

    if (error.status >= 500) {
      // The route pattern, not the URL: a URL may carry an enrollment or approval secret.
      this.logger.error({ err: exception, route: request.routeOptions?.url }, 'unhandled error');
    } else if (error instanceof AppError && error.options.logDetail) {
      this.logger.warn({ code: error.code, logDetail: error.options.logDetail }, error.detail);
    }
    if (reply.sent) return;
    const { status, headers, body } = renderError(request.url, error);
    for (const [name, value] of Object.entries(headers)) {
      if (name.toLowerCase() === 'www-authenticate' && reply.hasHeader('www-authenticate')) continue;
      reply.header(name, value);
    }
    void reply.status(status).send(body);
  }
}
