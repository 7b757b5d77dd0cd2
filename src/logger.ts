import type { LoggerService } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pino, type Logger } from 'pino';
import type { AppConfig } from './config/config.schema.js';
import { RequestContext } from './common/request-context.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request id: the caller's `X-Request-Id` when it is sane, else a new UUID. */
export function requestIdOf(raw: IncomingMessage): string {
  const req = raw as IncomingMessage & { id?: unknown };
  if (typeof req.id === 'string') return req.id;
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
  req.id = id;
  return id;
}

/** Paths redacted wherever they appear in a log object: credentials, proofs, codes. */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'headers.dpop',
  'headers.cookie',
  'body',
  '*.client_secret',
  '*.clientSecret',
  '*.apiKey',
  '*.token',
  '*.access_token',
  '*.code',
  '*.secret',
  '*.refreshToken',
];

/** The root logger of one service instance (structured JSON on stdout). */
export function createRootLogger(config: Pick<AppConfig, 'logLevel'>, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { service: 'mfa-proxy', pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** Nest's logger interface on pino; every line carries the request context (request, app, agent, model, task). */
export class PinoNestLogger implements LoggerService {
  constructor(private readonly root: Logger) {}

  private write(level: 'info' | 'warn' | 'error' | 'debug' | 'trace' | 'fatal', message: unknown, rest: unknown[]): void {
    const context = typeof rest[rest.length - 1] === 'string' ? (rest[rest.length - 1] as string) : undefined;
    const ctx = RequestContext.get();
    const fields: Record<string, unknown> = { context };
    for (const key of ['requestId', 'appId', 'agentId', 'userId', 'model', 'taskId'] as const) if (ctx[key] != null) fields[key] = ctx[key];
    if (message && typeof message === 'object' && !(message instanceof Error)) {
      const { msg, ...obj } = message as Record<string, unknown>;
      const text = typeof rest[0] === 'string' && rest.length > 1 ? (rest[0] as string) : (msg as string | undefined);
      this.root[level]({ ...fields, ...obj }, text);
    } else if (message instanceof Error) {
      this.root[level]({ ...fields, err: message }, message.message);
    } else {
      this.root[level](fields, String(message));
    }
  }

  log(message: unknown, ...rest: unknown[]): void {
    this.write('info', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    // Nest passes (message, stack, context); keep the stack out of the message.
    this.write('error', message, rest.filter((r, i) => !(i === 0 && typeof r === 'string' && r.includes('\n    at '))));
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('trace', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('fatal', message, rest);
  }
}
