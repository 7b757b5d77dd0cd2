import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { IncomingMessage } from 'node:http';
import { DataSource } from 'typeorm';
import { AppModule } from './app.module.js';
import type { AppConfig } from './config/config.schema.js';
import { Clock } from './common/clock.js';
import { AppError } from './common/errors/app-error.js';
import { onClientError, onFrameworkError } from './common/errors/pre-routing.js';
import { ProblemFilter } from './common/errors/problem.filter.js';
import { checkJsonBodyOrThrow } from './common/json/json-bodies.js';
import { parseStrictJson, StrictJsonError, type StrictJsonFault } from './common/json/strict-json.js';
import { runMigrations } from './database/data-source.js';
import { BufferedStdout, createRequestLogger, createRootLogger, PinoNestLogger, requestIdOf } from './logger.js';
import { MetricsService } from './modules/ops/metrics.service.js';
import { AuditService } from './modules/audit/audit.service.js';
import { RequestContext, type RequestFields } from './common/request-context.js';
import { ShutdownState } from './common/shutdown.js';
import { clientIp } from './common/net/client-ip.js';
import { proxyTrust } from './common/net/proxies.js';
import { PubSub } from './common/cache/pubsub.js';
import { ExactValidationPipe } from './common/validation.js';

export const BODY_LIMIT = 64 * 1024;
/** API.md (v1.1): `details` nests at most 32 levels; the body object around it is one more. */
export const DETAILS_MAX_DEPTH = 32;

/** What each strict-JSON fault tells the client (never the offending input itself). */
const JSON_FAULT_ERRORS: Record<StrictJsonFault, () => AppError> = {
  syntax: () => new AppError('malformed_json', 'request body is not valid JSON'),
  // Refused as Fastify's secure-json-parse refuses them (prototype pollution), and said so.
  forbidden_key: () => new AppError('validation_failed', 'JSON objects may not have a "__proto__" key, nor "constructor" with "prototype"'),
  too_deep: () => new AppError('validation_failed', `JSON nests too deeply (details: at most ${DETAILS_MAX_DEPTH} levels)`),
  duplicate_key: () => new AppError('validation_failed', 'JSON object has a duplicate key'),
  lone_surrogate: () => new AppError('validation_failed', 'JSON string has a lone surrogate (not valid Unicode)'),
  non_finite_number: () => new AppError('validation_failed', 'JSON number is not a finite IEEE-754 double'),
};

/** RFC 8259 §8.1: JSON is UTF-8. Fatal, so bytes that are not UTF-8 (a raw lone surrogate: ED A0 80) are refused, not replaced by U+FFFD. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The `application/json` body parser: strict JSON (src/common/json/strict-json.ts) instead of
 * Fastify's default, so `details` means one thing and reaches the hash as the client wrote it.
 * Its errors go through ProblemFilter: problem+json on /v1, RFC 6749 `invalid_request` on /oauth.
 */
export function parseJsonBody(body: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new AppError('validation_failed', 'request body is not valid UTF-8');
  }
  try {
    return parseStrictJson(text, { maxDepth: DETAILS_MAX_DEPTH + 1 });
  } catch (err) {
    if (err instanceof StrictJsonError) throw JSON_FAULT_ERRORS[err.fault]();
    throw err;
  }
}

export interface CreateAppOptions {
  clock?: Clock;
  /** Where log lines go (tests capture them); stdout by default. */
  logDestination?: import('pino').DestinationStream;
}

/** Builds the whole service (used by main.ts and by the e2e tests): migrated, initialised, not listening. */
export async function createApp(config: AppConfig, options: CreateAppOptions = {}): Promise<NestFastifyApplication> {
  const destination = options.logDestination ?? new BufferedStdout();
  const root = createRootLogger(config, destination);
  const requestLog = createRequestLogger(config, destination);
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT,
    genReqId: (req: unknown) => requestIdOf(req as IncomingMessage),
    // TRUST_PROXY: requests from these proxies come from the client their X-Forwarded-For names
    // (request.ip); otherwise the TCP peer is the client and X-Forwarded-* are ignored.
    trustProxy: config.trustedProxies.length > 0 ? proxyTrust(config.trustedProxies) : false,
    // Long ids are answered 404 by the handlers; longer ones (and undecodable paths) 404 by onFrameworkError.
    routerOptions: { maxParamLength: 1000 },
    frameworkErrors: onFrameworkError,
    clientErrorHandler: onClientError,
    return503OnClosing: true,
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config, options.clock), adapter, {
    logger: new PinoNestLogger(root),
    abortOnError: false,
  });
  app.enableShutdownHooks();
  app.useGlobalFilters(new ProblemFilter());
  app.useGlobalPipes(
    // The ValidationPipe, but `@AsParsed()` fields (details, JWKs, WebAuthn responses) pass exactly as parsed.
    new ExactValidationPipe({
      whitelist: true,
      forbidNonWhitelisted: true,
      transform: true,
      // Do not coerce "5" into 5: wrong types are refused.
      transformOptions: { enableImplicitConversion: false },
      stopAtFirstError: false,
    }),
  );

  // Registered before init, so Nest does not add Fastify's default JSON parser.
  app.useBodyParser('application/json', { bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  const fastify = app.getHttpAdapter().getInstance();
  // JSON (and forms on /oauth) only: anything else is 415, not a string handed to validation.
  fastify.removeContentTypeParser('text/plain');
  const metrics = app.get(MetricsService);
  const audit = app.get(AuditService);
  const shutdown = app.get(ShutdownState);
  // Opens the request's context (request id, ip) that guards fill in and logs and audit read: a
  // Fastify hook rather than a Nest middleware (middie's matching costs on every request). Kept on
  // the raw request too, so the response hook (outside this async context) can audit it.
  fastify.addHook('onRequest', (request, _reply, done) => {
    const raw = request.raw as IncomingMessage & { context?: RequestFields };
    raw.context = { requestId: request.id, ip: clientIp(request) };
    RequestContext.run(raw.context, done);
  });
  // Forms only at /oauth/*: elsewhere a body that is not JSON is 415 before guards and handlers (a matched route's body, once parsed).
  fastify.addHook('preValidation', (request, _reply, done) => {
    try {
      checkJsonBodyOrThrow(request);
      done();
    } catch (err) {
      done(err as Error);
    }
  });
  // The HTTP server has closed and its requests completed: their lines (and shutdown's) go out now.
  if (destination instanceof BufferedStdout) fastify.addHook('onClose', async () => destination.drain());
  fastify.addHook('onSend', async (request, reply, payload) => {
    reply.header('X-Request-Id', request.id);
    reply.header('X-Content-Type-Options', 'nosniff');
    if (shutdown.closing) reply.header('Connection', 'close');
    return payload;
  });
  fastify.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.observe(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
    // Every authenticated request (app, agent or human link) leaves an audit event, failures and 429s included.
    const ctx = (request.raw as { context?: RequestFields }).context;
    if (ctx?.appId) audit.recordRequest(ctx, route, request.method, reply.statusCode);
    // One line per request, with who called (never the credential itself).
    const agent = request.agentPrincipal;
    const level = reply.statusCode >= 500 ? 'error' : reply.statusCode >= 400 ? 'warn' : 'info';
    requestLog.write(level, {
      requestId: request.id,
      method: request.method,
      route,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      appId: agent?.appId ?? request.appPrincipal?.appId,
      agentId: agent?.agentId,
      userId: agent?.userId,
      model: agent?.model,
      taskId: agent?.taskId ?? undefined,
    });
  });

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('mfa-proxy')
      .setDescription('Step-up authentication for AI agents: scoped agent tokens, human approval of one exact action, single-use MFA-proxy tokens.')
      .setVersion('1')
      // API keys and the admin token are opaque random strings, not JWTs: no bearerFormat.
      .addSecurity('adminToken', { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN (operator)' })
      .addSecurity('appKey', { type: 'http', scheme: 'bearer', description: 'App API key (mpx_app_..., opaque; shown once)' })
      .addSecurity('appClient', { type: 'http', scheme: 'basic', description: 'App as OAuth client at /oauth/introspect: app id and an API key (client_secret_basic; client_secret_post in the body works too)' })
      .addSecurity('agentClient', { type: 'http', scheme: 'basic', description: 'Agent as OAuth client: agent id and client secret (client_secret_basic); client_secret_post and private_key_jwt (RFC 7523) go in the body' })
      .addSecurity('agentToken', { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Agent access token (RFC 9068 at+jwt). A DPoP-bound token is sent as `Authorization: DPoP <token>` with a DPoP proof header (see dpop).' })
      .addSecurity('dpop', { type: 'apiKey', in: 'header', name: 'DPoP', description: 'RFC 9449 DPoP proof JWT (typ dpop+jwt; htm, htu, iat, jti; ath with a bound token). With a DPoP-bound token, Authorization uses the DPoP scheme.' })
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'openapi.json', yamlDocumentUrl: 'openapi.yaml' });

  await runMigrations(app.get(DataSource));
  await app.init();
  await subscribedOrOn(app);
  await fastify.ready();
  return app;
}

/** How long boot waits for its pub/sub subscriptions (Redis down at boot: the service starts anyway and subscribes once Redis is back). */
const SUBSCRIBE_WAIT_MS = 5_000;

/**
 * Waits until this instance hears the other instances (its Redis subscriptions confirmed), so it
 * serves no request that a missed message would answer wrongly. With Redis unreachable it goes on
 * after SUBSCRIBE_WAIT_MS, logged, as it did before it waited.
 */
async function subscribedOrOn(app: NestFastifyApplication): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), SUBSCRIBE_WAIT_MS)));
  try {
    if ((await Promise.race([app.get(PubSub).subscribed(), late])) === 'late') {
      new Logger('bootstrap').warn({ waitedMs: SUBSCRIBE_WAIT_MS }, 'pub/sub subscriptions not confirmed: starting without them (other instances\' messages may not reach this one)');
    }
  } finally {
    clearTimeout(timer);
  }
}
