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

/** Names that carry a credential wherever they appear: at the top of a log object or one level down. */
const SECRET_FIELDS = [
  'authorization', 'cookie', 'dpop', 'client_secret', 'clientSecret', 'client_assertion', 'apiKey', 'token', 'access_token',
  'refresh_token', 'refreshToken', 'id_token', 'secret', 'webhookSecret', 'totpSecret', 'mfaProxyToken', 'password',
];

/**
 * Paths redacted in every log line: credentials by name, headers that carry them, and request
 * bodies whole (TOTP codes, client secrets, WebAuthn responses). `code` is redacted only where it is
 * a request's field (a TOTP or authorization code), so a database error's `code` (`23505`) and a
 * problem's `code` stay visible.
 */
export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  ...['authorization', 'cookie', 'dpop'].map((h) => `*.headers.${h}`),
  'body',
  '*.body',
  'dto.code',
  '*.dto.code',
  'form.code',
  '*.form.code',
];

/** Error fields that name things (tables, constraints, system calls) and never carry data. */
const ERROR_NAME_FIELDS = ['table', 'column', 'constraint', 'schema', 'errno', 'syscall', 'status', 'statusCode'] as const;
const ERROR_CAUSE_DEPTH = 3;

/**
 * The `err` serializer: class, message, code (the driver's: `23505`, `SQLITE_CONSTRAINT_UNIQUE`),
 * the SQL text with its placeholders, names, stack and cause. Never a query's parameters (ciphertexts,
 * hashes, tokens) nor the driver's `detail`/`where`, which quote row values.
 */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return err;
  const e = err as Error & Record<string, unknown>;
  const out: Record<string, unknown> = { type: e.constructor?.name || e.name, message: String(e.message).slice(0, 2000) };
  const driver = e.driverError as Record<string, unknown> | undefined;
  const code = e.code ?? driver?.code;
  if (typeof code === 'string' || typeof code === 'number') out.code = code;
  if (typeof e.query === 'string') out.query = e.query.slice(0, 4000);
  for (const key of ERROR_NAME_FIELDS) if (typeof e[key] === 'string' || typeof e[key] === 'number') out[key] = e[key];
  if (e.stack) out.stack = e.stack;
  if (e.cause !== undefined && depth < ERROR_CAUSE_DEPTH) out.cause = serializeError(e.cause, depth + 1);
  return out;
}

/** The root logger of one service instance (structured JSON on stdout). */
export function createRootLogger(config: Pick<AppConfig, 'logLevel'>, destination: pino.DestinationStream = new BufferedStdout()): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { service: 'mfa-proxy', pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: serializeError },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** What the one line per request carries: names, ids and numbers, never a credential nor a body. */
export interface RequestLine {
  requestId: string;
  method: string;
  route: string;
  status: number;
  ms: number;
  appId?: string;
  agentId?: string;
  userId?: string;
  model?: string;
  taskId?: string;
}

/**
 * The logger of the one line per request, without the root's redaction: redaction cost more CPU
 * than the rest of an authenticated request, and these lines have a fixed shape (RequestLine)
 * that holds no credential. Everything else goes through the root logger, redacted.
 */
export function createRequestLogger(config: Pick<AppConfig, 'logLevel'>, destination: pino.DestinationStream): { write(level: 'info' | 'warn' | 'error', line: RequestLine): void } {
  const log = pino({ level: config.logLevel, base: { service: 'mfa-proxy', pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  return { write: (level, line) => log[level](line, 'request completed') };
}

/** How long a line may wait in the buffer of standard output. */
const FLUSH_EVERY_MS = 1_000;

/**
 * Standard output, written in blocks of at least 4 KiB instead of one write per line (a line per
 * request written synchronously halved the throughput of the hot paths), and at least once a
 * second, so a quiet instance's lines (a refused request, a warning) never wait longer. At a
 * graceful stop `drain()` writes what is left and every later line at once (Nest re-raises the
 * signal after closing, so no exit handler would run); an exit (a crash included) writes it too.
 */
export class BufferedStdout implements pino.DestinationStream {
  private readonly out = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  private eager = false;
  private readonly timer = setInterval(() => this.flush(), FLUSH_EVERY_MS).unref();

  constructor() {
    process.once('exit', () => this.flushSync());
  }

  write(line: string): void {
    this.out.write(line);
    if (this.eager) this.flushSync();
  }

  /** Shutdown: what is buffered is written now, and every line from here on as it comes. */
  drain(): void {
    this.eager = true;
    clearInterval(this.timer);
    this.flushSync();
  }

  private flush(): void {
    this.out.flush((err) => void err); // an error here is a closed stdout: nothing to tell it to
  }

  private flushSync(): void {
    try {
      this.out.flushSync();
    } catch {
      /* a write in progress completes on its own; stdout closed: nowhere to write */
    }
  }
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
