import { z } from 'zod';
import { trustedProxyProblem } from '../common/net/proxies.js';

/**
 * Every environment variable the service reads, with its meaning and default.
 * Only `src/config/` reads `process.env`; everything else receives a validated `AppConfig`.
 * `secret: true` marks values that must never be printed.
 */
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const BASE64URL = /^[A-Za-z0-9_-]+$/;

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  PUBLIC_URL: z
    .url({ protocol: /^https?$/ })
    .transform((u) => u.replace(/\/+$/, ''))
    .optional(),
  DATABASE_URL: z
    .string()
    .regex(/^(postgres(ql)?:\/\/.+|sqlite:.+)$/, 'must be postgres://... or sqlite:<path>')
    .default('sqlite:./data/mfa-proxy.sqlite'),
  /** PostgreSQL: connections of this instance's pool (the requests and the background work share it). */
  DATABASE_POOL_MAX: int(1, 1000).default(20),
  /** PostgreSQL: how long a request or job waits for a connection of the pool before it fails (a request: 503). */
  DATABASE_POOL_TIMEOUT_MS: int(100, 600_000).default(10_000),
  REDIS_URL: z.string().regex(/^rediss?:\/\/.+/, 'must be redis://... or rediss://...').optional(),
  REDIS_KEY_PREFIX: z.string().max(64).default('mpx:'),
  /**
   * How long a Redis command may go unanswered: it then fails (the caller fails open or closed, as
   * when Redis is down), and a connection whose PING (one every this long) goes unanswered is
   * dropped and opened again. Without it, a link that goes silent rather than closing (a partition,
   * a wedged server) held every agent request on it indefinitely. Not below 500 ms: an event loop
   * held that long (a GC pause) would fail commands Redis had answered.
   */
  REDIS_COMMAND_TIMEOUT_MS: int(500, 60_000).default(2_000),
  MASTER_KEY: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be base64 of exactly 32 bytes')
    .optional(),
  /** Former master keys, comma-separated: they decrypt only; `npm run rekey` re-encrypts under MASTER_KEY. */
  MASTER_KEY_PREVIOUS: z
    .string()
    .refine(
      (v) => v.split(',').every((k) => /^[A-Za-z0-9+/_-]+={0,2}$/.test(k.trim()) && Buffer.from(k.trim(), 'base64').length === 32),
      'must be comma-separated base64 keys of exactly 32 bytes each',
    )
    .transform((v) => v.split(',').map((k) => Buffer.from(k.trim(), 'base64')))
    .optional(),
  ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  /**
   * The reverse proxies and load balancers in front of the service, comma-separated (addresses,
   * address/prefix, loopback, linklocal, uniquelocal): a request from one of them is taken to come
   * from the client its X-Forwarded-For names (the last address not in the list), for per-source
   * budgets and audit rows. Unset: the TCP peer, and X-Forwarded-For is ignored.
   */
  TRUST_PROXY: z
    .string()
    .transform((v) => v.split(',').map((e) => e.trim()).filter((e) => e !== ''))
    .superRefine((entries, ctx) => {
      if (entries.length === 0) ctx.addIssue({ code: 'custom', message: 'must list at least one proxy address' });
      for (const problem of entries.map(trustedProxyProblem)) if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  WEBHOOK_ALLOW_PRIVATE: bool.optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  AGENT_TOKEN_TTL_DEFAULT: int(60, 3600).default(300),
  AGENT_RATE_LIMIT_DEFAULT: int(1, 1_000_000).default(600),
  SIGNING_KEY_RELOAD_SECONDS: int(5, 3600).default(60),
  PRINCIPAL_CACHE_SECONDS: int(0, 3600).default(30),
  DPOP_IAT_WINDOW_SECONDS: int(5, 600).default(60),
  WEBAUTHN_ALLOW_CROSS_ORIGIN: bool.default(false),
  COOLDOWN_AFTER_DENIALS: int(1, 1000).default(3),
  COOLDOWN_WINDOW_SECONDS: int(60, 86400).default(900),
  COOLDOWN_SECONDS: int(1, 86400).default(900),
  AUTO_SUSPEND_AFTER_DENIALS: int(1, 10000).default(10),
  PUSHES_PER_USER_PER_HOUR: int(1, 100000).default(60),
  /** Tokens issued per authenticated client per minute at /oauth/token. */
  TOKENS_PER_CLIENT_PER_MINUTE: int(1, 10_000_000).default(60),
  /** MFA-proxy token verifications per app per minute. */
  VERIFIES_PER_APP_PER_MINUTE: int(1, 10_000_000).default(6000),
  WEBHOOK_TIMEOUT_MS: int(100, 60000).default(10000),
  WEBHOOK_RETRY_BASE_MS: int(10, 3600000).default(5000),
  WEBHOOK_MAX_ATTEMPTS: int(1, 100).default(10),
  /** How often each instance purges what retention allows (0: never); see RETENTION_* below. */
  RETENTION_SWEEP_SECONDS: int(0, 604_800).default(3600),
  /** Delivered outbox rows are purged this many days after delivery (pending, failed and no_endpoint rows are kept: they can be retried). */
  RETENTION_OUTBOX_DAYS: int(1, 3650).default(7),
  /** Rows removed by one DELETE; a sweep repeats batches until nothing is left, yielding in between. */
  RETENTION_BATCH_SIZE: int(1, 100_000).default(1000),
  /** Web Push identity (VAPID, RFC 8292): the application server's P-256 public key, uncompressed point (65 bytes), base64url. Dev: generated into DATA_DIR/vapid.json. */
  VAPID_PUBLIC_KEY: z
    .string()
    .refine((v) => BASE64URL.test(v) && Buffer.from(v, 'base64url').length === 65 && Buffer.from(v, 'base64url')[0] === 0x04, 'must be base64url of an uncompressed P-256 point (65 bytes)')
    .optional(),
  /** The matching private key (32 bytes, base64url). */
  VAPID_PRIVATE_KEY: z
    .string()
    .refine((v) => BASE64URL.test(v) && Buffer.from(v, 'base64url').length === 32, 'must be base64url of a 32-byte P-256 private key')
    .optional(),
  /** Who push services contact about our pushes (RFC 8292 §2.1 `sub`): a mailto: or https: URL. */
  VAPID_SUBJECT: z
    .string()
    .max(512)
    .refine((v) => /^mailto:[^\s@]+@[^\s@]+$/.test(v) || URL.canParse(v) && new URL(v).protocol === 'https:', 'must be a mailto: address or an https: URL')
    .optional(),
});

export type Env = z.infer<typeof envSchema>;

export const SECRET_VARIABLES = new Set(['MASTER_KEY', 'MASTER_KEY_PREVIOUS', 'ADMIN_TOKEN', 'DATABASE_URL', 'REDIS_URL', 'VAPID_PRIVATE_KEY']);

export interface AppConfig {
  env: Env['NODE_ENV'];
  port: number;
  host: string;
  publicUrl: string;
  /** The OAuth issuer (`iss` of every token we sign): equal to `publicUrl`. */
  issuer: string;
  rpId: string;
  database: { type: 'sqlite'; path: string } | { type: 'postgres'; url: string; poolMax: number; poolTimeoutMs: number };
  redis?: { url: string; keyPrefix: string; commandTimeoutMs: number };
  masterKey: Buffer;
  /** Former master keys (MASTER_KEY_PREVIOUS): accepted for decryption only, never to encrypt. */
  masterKeysPrevious: Buffer[];
  /** SHA-256 of the operator token; the token itself is not kept in memory longer than boot. */
  adminTokenHash: string;
  webhookAllowPrivate: boolean;
  /** TRUST_PROXY: the proxies whose X-Forwarded-For names the client; empty: the TCP peer is the client. */
  trustedProxies: string[];
  dataDir: string;
  logLevel: Env['LOG_LEVEL'];
  agentTokenTtlDefault: number;
  agentRateLimitDefault: number;
  signingKeyReloadSeconds: number;
  principalCacheSeconds: number;
  dpopIatWindowSeconds: number;
  webauthnAllowCrossOrigin: boolean;
  /** Anti push-fatigue: human denials of one agent before it is cooled down, and before it is suspended (24 h). */
  webhooks: { timeoutMs: number; retryBaseMs: number; maxAttempts: number };
  /** Budgets per minute that operators size to their traffic (the other buckets are fixed: they guard secrets or humans). */
  limits: { tokensPerClientPerMinute: number; verifiesPerAppPerMinute: number };
  fatigue: { cooldownAfterDenials: number; windowSeconds: number; cooldownSeconds: number; autoSuspendAfterDenials: number; pushesPerUserPerHour: number };
  /** Purging of rows that no longer serve a purpose (audit events are never purged). */
  retention: { sweepSeconds: number; outboxDays: number; batchSize: number };
  /** Web Push identity (VAPID, RFC 8292); keys base64url as web-push takes them. */
  vapid: { publicKey: string; privateKey: string; subject: string };
}
