/**
 * The service under test: `node <service-dir>/dist/src/main.js` in its own process, with the Node
 * flags of that service's `npm start` (startScriptFlags), configured
 * only through its environment (src/config/config.schema.ts), with the issuance and verify
 * budgets sized far above the load so rate limits are still checked on every request but never
 * refuse. Fixtures (apps, users, agents) are created through the public API, as a tenant would.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import webpush from 'web-push';
import type { BenchDb } from './db.js';
import { startNode, waitForHttp, type Started } from './procs.js';

export interface ServiceInstance {
  proc: Started;
  base: string;
  port: number;
}

export interface ServiceEnvInput {
  db: BenchDb;
  masterKey: string;
  adminToken: string;
  port: number;
  extra?: Record<string, string>;
}

export function newSecrets(): { masterKey: string; adminToken: string } {
  return { masterKey: randomBytes(32).toString('base64'), adminToken: `mpx_adm_${randomBytes(24).toString('base64url')}` };
}

/** One Web Push identity for every instance of a run (production requires it; the bench pushes to no one). */
const VAPID = webpush.generateVAPIDKeys();

/** The service's environment; the seeder boots the same AppModule with it (minus the port). */
export function serviceEnv({ db, masterKey, adminToken, port, extra }: ServiceEnvInput): Record<string, string> {
  return {
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    DATABASE_URL: db.url,
    ...(db.redisUrl ? { REDIS_URL: db.redisUrl, REDIS_KEY_PREFIX: db.redisPrefix! } : {}),
    MASTER_KEY: masterKey,
    ADMIN_TOKEN: adminToken,
    VAPID_PUBLIC_KEY: VAPID.publicKey,
    VAPID_PRIVATE_KEY: VAPID.privateKey,
    VAPID_SUBJECT: 'mailto:bench@mfa-proxy.invalid',
    DATA_DIR: join(db.dir, 'data'),
    LOG_LEVEL: 'warn',
    // Checked on every request, never refusing at bench load.
    TOKENS_PER_CLIENT_PER_MINUTE: '10000000',
    VERIFIES_PER_APP_PER_MINUTE: '10000000',
    // Agent tokens outlive a whole run (the whoami token is refreshed before each round anyway).
    AGENT_TOKEN_TTL_DEFAULT: '3600',
    ...extra,
  };
}

/**
 * The Node flags the service's own `npm start` runs it with (`node <flags> dist/src/main.js` in its
 * package.json, read from `serviceDir`, so an older build is measured as it ran). Only plain
 * `--name` or `--name=value` flags: anything the shell would have to interpret stops the bench.
 */
export function startScriptFlags(serviceDir: string): string[] {
  const start = (JSON.parse(readFileSync(join(serviceDir, 'package.json'), 'utf8')) as { scripts?: { start?: string } }).scripts?.start ?? '';
  const own = /^node((?:\s+--[\w-]+(?:=[\w.,:/+=-]+)?)*)\s+dist\/src\/main\.js$/.exec(start.trim());
  if (!own) throw new Error(`${serviceDir}/package.json: "start" is not \`node [--flag[=value] …] dist/src/main.js\` (${start}); the bench runs the service as it says`);
  return own[1]!.split(/\s+/).filter(Boolean);
}

/** BENCH_SERVICE_NODE_FLAGS: flags for the service processes only (a profile of the service alone, a V8 setting tried on it). */
export const extraServiceFlags = (): string[] => (process.env.BENCH_SERVICE_NODE_FLAGS ?? '').split(' ').filter(Boolean);

/**
 * The service's command line as the bench starts it (markdown), flags in the order node gets them
 * (startNode puts BENCH_NODE_FLAGS first; of a flag given twice, the last wins), and its `npm start`'s when they differ.
 */
export function serviceCommand(serviceDir: string): string {
  const own = startScriptFlags(serviceDir);
  const line = (flags: string[]) => `\`node ${[...flags, 'dist/src/main.js'].join(' ')}\``;
  const run = line([...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean), ...own, ...extraServiceFlags()]);
  return run === line(own) ? `as its \`npm start\` does: ${run}` : `${run} (BENCH_NODE_FLAGS, BENCH_SERVICE_NODE_FLAGS; its \`npm start\`: ${line(own)})`;
}

export async function startService(serviceDir: string, name: string, env: Record<string, string>, logFile: string): Promise<ServiceInstance> {
  const proc = startNode(name, join(serviceDir, 'dist/src/main.js'), [], env, logFile, serviceDir, [...startScriptFlags(serviceDir), ...extraServiceFlags()]);
  const base = env.PUBLIC_URL;
  await waitForHttp(`${base}/healthz`, proc, 120_000);
  return { proc, base, port: Number(env.PORT) };
}

/** A JSON call to the service's API that must succeed. */
export async function api<T = Record<string, unknown>>(base: string, method: string, path: string, auth: string, body?: unknown): Promise<T> {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

export interface Tenant {
  appId: string;
  apiKey: string;
  userId: string;
}

export interface BenchAgent {
  id: string;
  secret: string;
  /** `Basic base64(id:secret)`, see basicAuth. */
  basic: string;
}

/** RFC 6749 §2.3.1: id and secret are form-encoded before base64 (a `+` would otherwise read as a space). */
export function basicAuth(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

export async function createTenant(base: string, adminToken: string, name: string, webhookUrl?: string): Promise<Tenant> {
  const app = await api<{ id: string; apiKey: string }>(base, 'POST', '/v1/apps', `Bearer ${adminToken}`, { name, ...(webhookUrl ? { webhookUrl } : {}) });
  const user = await api<{ id: string }>(base, 'POST', '/v1/users', `Bearer ${app.apiKey}`, { externalId: `${name}-user`, displayName: 'Bench' });
  return { appId: app.id, apiKey: app.apiKey, userId: user.id };
}

export const BENCH_SCOPE = 'files:read';
/** The body of every measured /oauth/token request (client credentials; the client authenticates in the Authorization header). */
export const TOKEN_FORM = `grant_type=client_credentials&scope=${encodeURIComponent(BENCH_SCOPE)}`;
export const BENCH_BOUNDARIES = ['files:*'];

export async function createAgents(base: string, t: Tenant, count: number, prefix: string): Promise<BenchAgent[]> {
  const out: BenchAgent[] = [];
  for (let i = 0; i < count; i++) {
    const a = await api<{ id: string; clientSecret: string }>(base, 'POST', '/v1/agents', `Bearer ${t.apiKey}`, {
      userId: t.userId, name: `${prefix}-${i}`, model: 'bench-model', permissionBoundaries: BENCH_BOUNDARIES, rateLimitPerMinute: 1_000_000,
    });
    out.push({ id: a.id, secret: a.clientSecret, basic: basicAuth(a.id, a.clientSecret) });
  }
  return out;
}

/** A fresh agent access token (client credentials) for the whoami rounds. */
export async function agentToken(base: string, agent: BenchAgent): Promise<string> {
  const res = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: { authorization: agent.basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&scope=${encodeURIComponent(BENCH_SCOPE)}`,
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`/oauth/token: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}
