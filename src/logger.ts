import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Params } from 'nestjs-pino';
import type { AppConfig } from './config/config.schema.js';

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

/** Structured logs; credentials and proofs are redacted wherever they could appear. */
export function loggerOptions(config: AppConfig): Params {
  return {
    pinoHttp: {
      level: config.logLevel,
      genReqId: (req) => requestIdOf(req as IncomingMessage),
      customAttributeKeys: { reqId: 'requestId' },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers.dpop',
          'req.headers.cookie',
          'req.headers["x-api-key"]',
          'res.headers["set-cookie"]',
          'req.body',
          '*.client_secret',
          '*.clientSecret',
          '*.apiKey',
          '*.token',
          '*.code',
        ],
        censor: '[redacted]',
      },
      serializers: {
        // The query string may carry a token in a misbehaving client: log the path only.
        req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, path: req.url?.split('?')[0] }),
      },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info'),
    },
  };
}
