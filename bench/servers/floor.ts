/**
 * The floor: what the three hot paths cost when written directly on `node:http`, with the same
 * crypto (jose, ES256) and the same database, doing the same essential work and nothing else.
 *   POST /oauth/token   client_secret_basic: one prepared lookup of the agent in the service's
 *                       `agents` table, SHA-256 of the presented secret compared in constant time
 *                       with `secret_hash` (as src/common/crypto/tokens.ts), scope within the
 *                       agent's boundaries, an ES256 JWT signed with a cached key.
 *   GET  /v1/whoami     the service's agent token verified with jose against the service's JWKS
 *                       (fetched once, cached), no database.
 *   POST /v1/mfa-proxy-tokens/verify   app key checked against a cached hash; the MFA-proxy token
 *                       verified (typ, alg, iss, exp, aud, action, resource, RFC 8785 details hash);
 *                       then the same single-use consume as the service, in one transaction:
 *                       the conditional UPDATE of step_ups (RETURNING the response fields) + one
 *                       audit_events row + one outbox row. SQLite: better-sqlite3 prepared
 *                       statements; PostgreSQL: one statement (CTE) on a `pg` Pool, which is its
 *                       own transaction. It consumes its own pre-minted tokens (its own app).
 * Usage: node dist/bench/servers/floor.js <config.json>
 */
import Database from 'better-sqlite3';
import canonicalize from 'canonicalize';
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createLocalJWKSet, generateKeyPair, jwtVerify, SignJWT, type JSONWebKeySet, type JWTPayload } from 'jose';
import pg from 'pg';

export interface FloorConfig {
  port: number;
  databaseUrl: string;
  /** The service's JWKS (agent tokens and MFA-proxy tokens are signed by the service). */
  jwksUrl: string;
  serviceIssuer: string;
  /** The app whose MFA-proxy tokens this floor consumes (its own app, its own tokens). */
  app: { id: string; apiKey: string };
}

const config = JSON.parse(readFileSync(process.argv[2], 'utf8')) as FloorConfig;
const FLOOR_ISSUER = `http://127.0.0.1:${config.port}`;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();
const hashSecret = (s: string) => createHash('sha256').update(s, 'utf8').digest('base64url');
/** Constant time (hashed first, so lengths never leak), as the service's safeEqual. */
const safeEqual = (a: string, b: string) => timingSafeEqual(sha256(a), sha256(b));
const appKeyHash = hashSecret(config.app.apiKey);

interface AgentRow { id: string; app_id: string; user_id: string; model: string; secret_hash: string | null; status: string; token_ttl: number; permission_boundaries: string }
interface ConsumedRow { id: string; user_id: string; agent_id: string; model: string; task_id: string | null; action: string; resource: string | null; details_hash: string; method: string | null; decided_at: string | number; initiator: string }
interface ConsumeInput { now: number; appId: string; jti: string; auditId: string; requestId: string; ip: string | null; eventId: string; createdIso: string }

interface Store {
  agent(id: string): Promise<AgentRow | undefined>;
  consume(i: ConsumeInput): Promise<ConsumedRow | undefined>;
}

const CONSUME = `UPDATE step_ups SET consumed_at = $1 WHERE app_id = $2 AND token_jti = $3 AND consumed_at IS NULL AND status = 'approved'
  RETURNING id, user_id, agent_id, model, task_id, action, resource, details_hash, method, decided_at, initiator`;
const AGENT = 'SELECT id, app_id, user_id, model, secret_hash, status, token_ttl, permission_boundaries FROM agents WHERE id = $1';

function eventPayload(i: ConsumeInput, r: ConsumedRow): string {
  const data = { stepUpId: r.id, actorType: r.initiator, agentId: r.agent_id, userId: r.user_id, model: r.model, taskId: r.task_id, action: r.action, resource: r.resource, detailsHash: r.details_hash };
  return JSON.stringify({ id: i.eventId, type: 'mfa_proxy_token.consumed', createdAt: i.createdIso, data });
}

function sqliteStore(path: string): Store {
  const db = new Database(path);
  // The service's pragmas (src/database/data-source.ts).
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  const agent = db.prepare(AGENT.replace('$1', '?'));
  const consume = db.prepare(CONSUME.replace(/\$\d/g, '?'));
  const audit = db.prepare(`INSERT INTO audit_events (id, app_id, at, request_id, actor_type, actor_id, user_id, agent_id, model, task_id, type, action, resource, outcome, status, ip, details, seq, prev_hash, hash)
    VALUES (?, ?, ?, ?, 'app', ?, ?, ?, ?, ?, 'mfa_proxy_token.consumed', ?, ?, 'success', 200, ?, NULL, NULL, NULL, NULL)`);
  const outbox = db.prepare(`INSERT INTO outbox (id, app_id, type, payload, created_at, delivered_at, delivery_status, attempts, next_attempt_at, claimed_until, claimed_by, last_error, stream_seq)
    VALUES (?, ?, 'mfa_proxy_token.consumed', ?, ?, NULL, 'pending', 0, ?, NULL, NULL, NULL, NULL)`);
  const tx = db.transaction((i: ConsumeInput): ConsumedRow | undefined => {
    const r = consume.get(i.now, i.appId, i.jti) as ConsumedRow | undefined;
    if (!r) return undefined;
    audit.run(i.auditId, i.appId, i.now, i.requestId, i.appId, r.user_id, r.agent_id, r.model, r.task_id, r.action, r.resource, i.ip);
    outbox.run(i.eventId, i.appId, eventPayload(i, r), i.now, i.now);
    return r;
  });
  return {
    agent: async (id) => agent.get(id) as AgentRow | undefined,
    consume: async (i) => tx.immediate(i),
  };
}

function postgresStore(url: string): Store {
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  // One statement, so one transaction and one round trip: consume, audit row, outbox row.
  const text = `WITH c AS (${CONSUME}),
    a AS (INSERT INTO audit_events (id, app_id, at, request_id, actor_type, actor_id, user_id, agent_id, model, task_id, type, action, resource, outcome, status, ip, details, seq, prev_hash, hash)
      SELECT $4, $2, $1, $5, 'app', $2, user_id, agent_id, model, task_id, 'mfa_proxy_token.consumed', action, resource, 'success', 200, $6, NULL, NULL, NULL, NULL FROM c),
    o AS (INSERT INTO outbox (id, app_id, type, payload, created_at, delivered_at, delivery_status, attempts, next_attempt_at, claimed_until, claimed_by, last_error, stream_seq)
      SELECT $7, $2, 'mfa_proxy_token.consumed', json_build_object('id', $7::varchar, 'type', 'mfa_proxy_token.consumed', 'createdAt', $8::varchar,
        'data', json_build_object('stepUpId', id, 'actorType', initiator, 'agentId', agent_id, 'userId', user_id, 'model', model, 'taskId', task_id,
          'action', action, 'resource', resource, 'detailsHash', details_hash))::text, $1, NULL, 'pending', 0, $1, NULL, NULL, NULL, NULL FROM c)
    SELECT * FROM c`;
  return {
    agent: async (id) => (await pool.query<AgentRow>({ name: 'agent', text: AGENT, values: [id] })).rows[0],
    consume: async (i) =>
      (await pool.query<ConsumedRow>({ name: 'consume', text, values: [i.now, i.appId, i.jti, i.auditId, i.requestId, i.ip, i.eventId, i.createdIso] })).rows[0],
  };
}

const store = config.databaseUrl.startsWith('sqlite:') ? sqliteStore(config.databaseUrl.slice('sqlite:'.length)) : postgresStore(config.databaseUrl);
const jwks = createLocalJWKSet((await (await fetch(config.jwksUrl)).json()) as JSONWebKeySet);
const { privateKey } = await generateKeyPair('ES256');
const floorKid = randomBytes(12).toString('base64url');

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 64 * 1024) reject(new Error('too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  return h?.startsWith('Bearer ') ? h.slice(7) : null;
}

/** `files:*` covers `files:read`; an exact boundary covers itself. */
const within = (boundaries: string[], scope: string) => boundaries.some((b) => b === scope || (b.endsWith(':*') && scope.startsWith(b.slice(0, -1))));

async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const form = new URLSearchParams(await readBody(req));
  const h = req.headers.authorization;
  if (!h?.startsWith('Basic ')) return send(res, 401, { error: 'invalid_client' });
  const decoded = Buffer.from(h.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const clientId = decodeURIComponent(decoded.slice(0, colon));
  const secret = decodeURIComponent(decoded.slice(colon + 1));
  const agent = await store.agent(clientId);
  // RFC 6749 §5.2: unknown client, wrong secret and an inactive agent all read invalid_client.
  if (!agent || agent.status !== 'active' || !agent.secret_hash || !safeEqual(hashSecret(secret), agent.secret_hash)) return send(res, 401, { error: 'invalid_client' });
  if (form.get('grant_type') !== 'client_credentials') return send(res, 400, { error: 'unsupported_grant_type' });
  const scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
  const boundaries = JSON.parse(agent.permission_boundaries) as string[];
  if (!scopes.length || !scopes.every((s) => within(boundaries, s))) return send(res, 400, { error: 'invalid_scope' });
  const now = Math.floor(Date.now() / 1000);
  const ttl = Number(agent.token_ttl);
  const claims: JWTPayload = { iss: FLOOR_ISSUER, sub: agent.user_id, aud: [FLOOR_ISSUER, agent.app_id], client_id: agent.id, act: { sub: agent.id }, scope: scopes.join(' '), jti: randomUUID(), iat: now, exp: now + ttl, model: agent.model };
  const jwt = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: floorKid }).sign(privateKey);
  send(res, 200, { access_token: jwt, token_type: 'Bearer', expires_in: ttl, scope: scopes.join(' ') });
}

async function whoami(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const jwt = bearer(req);
  if (!jwt) return send(res, 401, { error: 'invalid_token' });
  try {
    const { payload } = await jwtVerify(jwt, jwks, { algorithms: ['ES256'], typ: 'at+jwt', issuer: config.serviceIssuer, audience: config.serviceIssuer, requiredClaims: ['exp', 'iat', 'jti', 'sub'] });
    const aud = payload.aud as string[];
    send(res, 200, { agentId: payload.client_id, userId: payload.sub, appId: aud[1], model: payload.model, scopes: String(payload.scope).split(' '), expiresAt: new Date(payload.exp! * 1000).toISOString() });
  } catch {
    send(res, 401, { error: 'invalid_token' });
  }
}

const detailsHash = (d: unknown) => createHash('sha256').update(canonicalize(d ?? {}) ?? '').digest('base64url');

async function verify(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const key = bearer(req);
  if (!key || !safeEqual(hashSecret(key), appKeyHash)) return send(res, 401, { error: 'unauthorized' });
  let body: { token?: unknown; action?: unknown; resource?: unknown; details?: unknown };
  try {
    body = JSON.parse(await readBody(req)) as typeof body;
  } catch {
    return send(res, 400, { error: 'malformed_json' });
  }
  if (typeof body.token !== 'string' || typeof body.action !== 'string') return send(res, 400, { error: 'validation_failed' });
  const refuse = (reason: string) => send(res, 200, { valid: false, reason });
  let claims: JWTPayload;
  try {
    claims = (await jwtVerify(body.token, jwks, { algorithms: ['ES256'], typ: 'mfa-proxy+jwt', issuer: config.serviceIssuer, requiredClaims: ['exp', 'iat', 'jti', 'sub'] })).payload;
  } catch {
    return refuse('invalid_signature');
  }
  if (claims.aud !== config.app.id) return refuse('wrong_audience');
  if (claims.action !== body.action) return refuse('action_mismatch');
  if ((body.resource ?? null) !== (claims.resource ?? null)) return refuse('resource_mismatch');
  if (detailsHash(body.details) !== claims.details_hash) return refuse('details_mismatch');
  const now = Date.now();
  const row = await store.consume({
    now, appId: config.app.id, jti: claims.jti!, auditId: `evt_${randomBytes(16).toString('base64url')}`, requestId: randomUUID(),
    ip: req.socket.remoteAddress ?? null, eventId: `evt_${randomBytes(16).toString('base64url')}`, createdIso: new Date(now).toISOString(),
  });
  if (!row) return refuse('already_used');
  send(res, 200, {
    valid: true, stepUpId: row.id, userId: row.user_id, agentId: row.agent_id, model: row.model, taskId: row.task_id, action: row.action,
    resource: row.resource, detailsHash: row.details_hash, method: row.method ?? undefined, approvedAt: new Date(Number(row.decided_at)).toISOString(),
  });
}

const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> = {
  'POST /oauth/token': token,
  'GET /v1/whoami': whoami,
  'POST /v1/mfa-proxy-tokens/verify': verify,
  'GET /healthz': async (_req, res) => send(res, 200, { status: 'ok' }),
};

createServer((req, res) => {
  const route = routes[`${req.method} ${req.url}`];
  if (!route) return send(res, 404, { error: 'not_found' });
  route(req, res).catch((err: unknown) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, { error: 'internal' });
  });
})
  .listen(config.port, '127.0.0.1', () => console.log(`floor listening on ${FLOOR_ISSUER}`));
