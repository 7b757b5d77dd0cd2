import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createECDH, randomBytes } from 'node:crypto';
import webpush from 'web-push';
import { isAbsolute, join, resolve } from 'node:path';
import { envSchema, type AppConfig, type Env } from './config.schema.js';
import { hashSecret, randomToken, TOKEN_PREFIX } from '../common/crypto/tokens.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Something said once at boot (a generated dev secret, a warning); printed by main.ts. */
export interface BootNotice {
  level: 'warn' | 'info';
  message: string;
}

function parseEnv(env: Record<string, string | undefined>): Env {
  // Empty strings count as unset, as in most process managers.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = envSchema.safeParse(present);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}

function readOrCreateFile(path: string, create: () => string): { value: string; created: boolean } {
  if (existsSync(path)) return { value: readFileSync(path, 'utf8').trim(), created: false };
  // Written whole under a temporary name, then linked into place: processes starting together
  // (tests, several dev instances) never read a half-written file, and the first link wins.
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, create() + '\n', { mode: 0o600, flag: 'wx' });
  let created = true;
  try {
    chmodSync(tmp, 0o600);
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    created = false;
  } finally {
    unlinkSync(tmp);
  }
  return { value: readFileSync(path, 'utf8').trim(), created };
}

/**
 * The VAPID identity (RFC 8292): from VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY / VAPID_SUBJECT, or in
 * development a key pair generated once into DATA_DIR/vapid.json (mode 0600) with a warning.
 */
function vapidConfig(env: Env, publicUrl: string, ensureDataDir: () => string, notices: BootNotice[]): AppConfig['vapid'] {
  if (!!env.VAPID_PUBLIC_KEY !== !!env.VAPID_PRIVATE_KEY) throw new ConfigError(`${env.VAPID_PUBLIC_KEY ? 'VAPID_PRIVATE_KEY' : 'VAPID_PUBLIC_KEY'} must be set together with ${env.VAPID_PUBLIC_KEY ? 'VAPID_PUBLIC_KEY' : 'VAPID_PRIVATE_KEY'}`);
  let publicKey = env.VAPID_PUBLIC_KEY;
  let privateKey = env.VAPID_PRIVATE_KEY;
  if (!publicKey || !privateKey) {
    const file = join(ensureDataDir(), 'vapid.json');
    const { value, created } = readOrCreateFile(file, () => JSON.stringify(webpush.generateVAPIDKeys()));
    let keys: { publicKey?: unknown; privateKey?: unknown };
    try {
      keys = JSON.parse(value);
    } catch {
      throw new ConfigError(`${file}: must hold { "publicKey", "privateKey" } (base64url)`);
    }
    if (typeof keys.publicKey !== 'string' || typeof keys.privateKey !== 'string') throw new ConfigError(`${file}: must hold { "publicKey", "privateKey" } (base64url)`);
    publicKey = keys.publicKey;
    privateKey = keys.privateKey;
    notices.push({
      level: 'warn',
      message: `VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY not set: using the development Web Push keys in ${file}${created ? ' (just generated)' : ''}. Set them in production.`,
    });
  }
  // The pair must match, or every push service refuses our signatures (RFC 8292 §3.2).
  let derived: Buffer;
  try {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(privateKey, 'base64url'));
    derived = ecdh.getPublicKey();
  } catch {
    throw new ConfigError('VAPID_PRIVATE_KEY: not a valid P-256 private key');
  }
  if (!derived.equals(Buffer.from(publicKey, 'base64url'))) throw new ConfigError('VAPID_PUBLIC_KEY: does not match VAPID_PRIVATE_KEY');
  const url = new URL(publicUrl);
  const subject = env.VAPID_SUBJECT ?? (url.protocol === 'https:' ? url.origin : `mailto:mfa-proxy@${url.hostname}`);
  return { publicKey, privateKey, subject };
}

/**
 * Reads and validates the configuration once. In development every variable may be absent:
 * the master key and admin token are generated into DATA_DIR (mode 0600) and announced.
 */
export function loadConfig(
  rawEnv: Record<string, string | undefined> = process.env,
  notices: BootNotice[] = [],
): AppConfig {
  const env = parseEnv(rawEnv);
  const production = env.NODE_ENV === 'production';
  if (production) {
    const missing = (['MASTER_KEY', 'PUBLIC_URL'] as const).filter((k) => !env[k]);
    if (missing.length) throw new ConfigError(`NODE_ENV=production requires ${missing.join(' and ')}`);
    if (!env.ADMIN_TOKEN) throw new ConfigError('NODE_ENV=production requires ADMIN_TOKEN');
    const vapid = (['VAPID_PUBLIC_KEY', 'VAPID_PRIVATE_KEY', 'VAPID_SUBJECT'] as const).filter((k) => !env[k]);
    if (vapid.length) throw new ConfigError(`NODE_ENV=production requires ${vapid.join(' and ')} (Web Push; generate a pair with \`npx web-push generate-vapid-keys\`)`);
  }
  const dataDir = resolve(env.DATA_DIR);
  const ensureDataDir = () => {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    return dataDir;
  };

  let masterKey: Buffer;
  if (env.MASTER_KEY) {
    masterKey = Buffer.from(env.MASTER_KEY, 'base64');
  } else {
    ensureDataDir();
    const file = join(dataDir, 'master.key');
    const { value, created } = readOrCreateFile(file, () => randomBytes(32).toString('base64'));
    masterKey = Buffer.from(value, 'base64');
    if (masterKey.length !== 32) throw new ConfigError(`${file}: must hold base64 of exactly 32 bytes`);
    notices.push({
      level: 'warn',
      message: `MASTER_KEY not set: using the development key in ${file}${created ? ' (just generated)' : ''}. Set MASTER_KEY in production.`,
    });
  }

  const masterKeysPrevious = env.MASTER_KEY_PREVIOUS ?? [];
  if (masterKeysPrevious.length) {
    notices.push({
      level: 'warn',
      message: `MASTER_KEY_PREVIOUS set: ${masterKeysPrevious.length} former master key(s) accepted for decryption only. Run \`npm run rekey\`, then remove MASTER_KEY_PREVIOUS and restart.`,
    });
  }

  let adminToken = env.ADMIN_TOKEN;
  if (!adminToken) {
    ensureDataDir();
    const file = join(dataDir, 'admin.token');
    const { value, created } = readOrCreateFile(file, () => randomToken(TOKEN_PREFIX.admin));
    adminToken = value;
    notices.push(
      created
        ? { level: 'warn', message: `ADMIN_TOKEN not set: generated an operator token (shown once, kept in ${file}): ${value}` }
        : { level: 'info', message: `ADMIN_TOKEN not set: using the operator token in ${file}` },
    );
  }

  const publicUrl = env.PUBLIC_URL ?? `http://localhost:${env.PORT}`;
  const database: AppConfig['database'] = env.DATABASE_URL.startsWith('sqlite:')
    ? (() => {
        const p = env.DATABASE_URL.slice('sqlite:'.length);
        if (p === ':memory:') return { type: 'sqlite' as const, path: p };
        return { type: 'sqlite' as const, path: isAbsolute(p) ? p : resolve(p) };
      })()
    : { type: 'postgres' as const, url: env.DATABASE_URL, poolMax: env.DATABASE_POOL_MAX, poolTimeoutMs: env.DATABASE_POOL_TIMEOUT_MS };

  return {
    env: env.NODE_ENV,
    port: env.PORT,
    host: env.HOST,
    publicUrl,
    issuer: publicUrl,
    rpId: new URL(publicUrl).hostname,
    database,
    redis: env.REDIS_URL ? { url: env.REDIS_URL, keyPrefix: env.REDIS_KEY_PREFIX, commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS } : undefined,
    masterKey,
    masterKeysPrevious,
    adminTokenHash: hashSecret(adminToken),
    webhookAllowPrivate: env.WEBHOOK_ALLOW_PRIVATE ?? !production,
    trustedProxies: env.TRUST_PROXY ?? [],
    dataDir,
    logLevel: env.LOG_LEVEL,
    agentTokenTtlDefault: env.AGENT_TOKEN_TTL_DEFAULT,
    agentRateLimitDefault: env.AGENT_RATE_LIMIT_DEFAULT,
    signingKeyReloadSeconds: env.SIGNING_KEY_RELOAD_SECONDS,
    principalCacheSeconds: env.PRINCIPAL_CACHE_SECONDS,
    dpopIatWindowSeconds: env.DPOP_IAT_WINDOW_SECONDS,
    webauthnAllowCrossOrigin: env.WEBAUTHN_ALLOW_CROSS_ORIGIN,
    webhooks: { timeoutMs: env.WEBHOOK_TIMEOUT_MS, retryBaseMs: env.WEBHOOK_RETRY_BASE_MS, maxAttempts: env.WEBHOOK_MAX_ATTEMPTS },
    limits: { tokensPerClientPerMinute: env.TOKENS_PER_CLIENT_PER_MINUTE, verifiesPerAppPerMinute: env.VERIFIES_PER_APP_PER_MINUTE },
    fatigue: {
      cooldownAfterDenials: env.COOLDOWN_AFTER_DENIALS,
      windowSeconds: env.COOLDOWN_WINDOW_SECONDS,
      cooldownSeconds: env.COOLDOWN_SECONDS,
      autoSuspendAfterDenials: env.AUTO_SUSPEND_AFTER_DENIALS,
      pushesPerUserPerHour: env.PUSHES_PER_USER_PER_HOUR,
    },
    retention: { sweepSeconds: env.RETENTION_SWEEP_SECONDS, outboxDays: env.RETENTION_OUTBOX_DAYS, batchSize: env.RETENTION_BATCH_SIZE },
    vapid: vapidConfig(env, publicUrl, ensureDataDir, notices),
  };
}

export const APP_CONFIG = Symbol('APP_CONFIG');
