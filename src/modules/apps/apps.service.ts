import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { randomBytes } from 'node:crypto';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { iso } from '../../common/time.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { hashSecret, randomToken, TOKEN_PREFIX } from '../../common/crypto/tokens.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { webhookUrlProblem } from '../../common/net/ssrf.js';
import { isId, newId } from '../../common/ids.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { APP_CHANGED } from '../../common/cache/channels.js';
import { LoadingCache } from '../../common/cache/loading-cache.js';
import type { AppPrincipal } from '../../common/auth/principals.js';
import { AuditLog } from '../../common/audit-log.js';
import { isUniqueViolation } from '../../database/errors.js';
import type { SqliteSession } from '../../database/sqlite-serial.js';
import { resourceProblem, resourceSpellings, validateChallengeJwksOrThrow } from './challenge-keys.js';
import { AppApiKeyEntity, AppEntity } from './app.entity.js';
import { AppsRepository } from './apps.repository.js';
import type { AppDto, CreateAppDto, CreatedApiKeyDto, CreatedAppDto, UpdateAppDto } from './dto/app.dto.js';

export const KEY_REVOKED = 'app-key.revoked';
const WEBHOOK_SECRET_GRACE_MS = 24 * 3600_000;

/** Standard Webhooks secret: `whsec_` + base64 of 32 random bytes (the HMAC key). */
const newWebhookSecret = () => TOKEN_PREFIX.webhookSecret + randomBytes(32).toString('base64');

@Injectable()
export class AppsService implements OnModuleInit {
  /** API-key hash → principal: the app-key check on the verify hot path costs no query when warm. */
  private readonly keyCache: LoadingCache<AppPrincipal, null>;

  constructor(
    private readonly repo: AppsRepository,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
    private readonly pubsub: PubSub,
    private readonly audit: AuditLog,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.keyCache = new LoadingCache<AppPrincipal, null>((keyHash) => this.principalOfKey(keyHash), config.principalCacheSeconds * 1000);
  }

  onModuleInit(): void {
    this.pubsub.subscribe(KEY_REVOKED, (m) => this.keyCache.deleteWhere((p) => p.keyId === m.keyId));
    this.pubsub.subscribe('cache.reset', () => this.keyCache.clear());
  }

  async create(dto: CreateAppDto): Promise<CreatedAppDto> {
    const now = this.clock.now();
    const id = newId('app');
    const apiKey = randomToken(TOKEN_PREFIX.appKey);
    this.checkWebhookUrl(dto.webhookUrl);
    const txn = await this.txnSettingsOrThrow(dto.resource, dto.challengeJwks);
    const webhookSecret = newWebhookSecret();
    const app = Object.assign(new AppEntity(), {
      id,
      appId: id,
      name: dto.name,
      webhookUrl: dto.webhookUrl ?? null,
      origins: dto.origins ?? [],
      approvalUrlToAgent: dto.approvalUrlToAgent ?? false,
      resource: txn.resource ?? null,
      challengeJwks: txn.challengeJwks ?? null,
      webhookSecretEnc: this.cipher.encrypt(webhookSecret, { table: 'apps', column: 'webhook_secret_enc', id }),
      createdAt: now,
      updatedAt: now,
    });
    const key = this.newKey(id, apiKey, now);
    await this.uniqueResourceOrConflict(() => this.repo.createWithKey(app, key));
    return { id, name: app.name, webhookUrl: app.webhookUrl, origins: app.origins, approvalUrlToAgent: app.approvalUrlToAgent, resource: app.resource, challengeJwks: app.challengeJwks, apiKey, apiKeyId: key.id, webhookSecret, createdAt: iso(now) };
  }

  async get(id: string): Promise<AppDto> {
    const app = await this.findOrThrow(id);
    return this.toDto(app, await this.repo.activeKeys(app.id));
  }

  async update(id: string, dto: UpdateAppDto): Promise<AppDto> {
    const app = await this.findOrThrow(id);
    const patch: Partial<AppEntity> = { updatedAt: this.clock.now() };
    if (dto.name !== undefined) patch.name = dto.name;
    if (dto.webhookUrl !== undefined) {
      if (dto.webhookUrl !== null) this.checkWebhookUrl(dto.webhookUrl);
      patch.webhookUrl = dto.webhookUrl;
    }
    if (dto.origins !== undefined) patch.origins = dto.origins;
    if (dto.approvalUrlToAgent !== undefined) patch.approvalUrlToAgent = dto.approvalUrlToAgent;
    Object.assign(patch, await this.txnSettingsOrThrow(dto.resource, dto.challengeJwks, app.id));
    await this.uniqueResourceOrConflict(() => this.repo.update(app.id, patch));
    // Every instance drops its copy of the target (URL, secrets) now, not at its cache lifetime.
    await this.pubsub.publish(APP_CHANGED, { appId: app.id });
    return this.get(app.id);
  }

  async createKey(appId: string): Promise<CreatedApiKeyDto> {
    const app = await this.findOrThrow(appId);
    const now = this.clock.now();
    const apiKey = randomToken(TOKEN_PREFIX.appKey);
    const key = this.newKey(app.id, apiKey, now);
    await this.repo.ds.transaction(async (m) => {
      await this.repo.insertKey(m, key);
      await this.audit.record(m, { appId: app.id, type: 'api_key.created', outcome: 'success', resource: key.id });
    });
    return { id: key.id, apiKey, createdAt: iso(now) };
  }

  async deleteKey(appId: string, keyId: string): Promise<void> {
    const app = await this.findOrThrow(appId);
    const revoked = isId('apiKey', keyId) && (await this.repo.ds.transaction(async (m) => {
      if (!(await this.repo.revokeKey(m, app.id, keyId, this.clock.now()))) return false;
      await this.audit.record(m, { appId: app.id, type: 'api_key.deleted', outcome: 'success', resource: keyId });
      return true;
    }));
    if (!revoked) throw notFound('API key');
    this.keyCache.deleteWhere((p) => p.keyId === keyId);
    await this.pubsub.publish(KEY_REVOKED, { keyId });
  }

  /** Of these API key ids, those not revoked (read from the database, not the cache). */
  activeKeyIds(keyIds: string[]): Promise<Set<string>> {
    return this.repo.activeKeyIds(keyIds);
  }

  /** The app behind an API key, or null. The key is looked up by its SHA-256 only. */
  async authenticate(apiKey: string): Promise<AppPrincipal | null> {
    if (!apiKey.startsWith(TOKEN_PREFIX.appKey)) return null;
    return this.keyCache.get(hashSecret(apiKey));
  }

  private async principalOfKey(keyHash: string): Promise<AppPrincipal | null> {
    const key = await this.repo.findActiveKeyByHash(keyHash);
    return key && { appId: key.appId, keyId: key.id };
  }

  async findOrThrow(id: string): Promise<AppEntity> {
    const app = isId('app', id) ? await this.repo.findApp(id) : null;
    if (!app) throw notFound('app');
    return app;
  }

  /**
   * A new webhook secret; the previous one keeps signing too (a second signature) for the grace
   * period, so the app can deploy the new one without dropping deliveries.
   */
  async rotateWebhookSecret(appId: string): Promise<{ webhookSecret: string; previousValidUntil: string }> {
    const app = await this.findOrThrow(appId);
    const now = this.clock.now();
    const webhookSecret = newWebhookSecret();
    const until = now + WEBHOOK_SECRET_GRACE_MS;
    await this.repo.update(app.id, {
      webhookSecretEnc: this.cipher.encrypt(webhookSecret, { table: 'apps', column: 'webhook_secret_enc', id: app.id }),
      // Re-encrypted under its new column: a ciphertext is bound to its column.
      webhookSecretPrevEnc: this.cipher.encrypt(this.cipher.decryptString(app.webhookSecretEnc, { table: 'apps', column: 'webhook_secret_enc', id: app.id }), { table: 'apps', column: 'webhook_secret_prev_enc', id: app.id }),
      webhookSecretPrevUntil: until,
      updatedAt: now,
    });
    await this.pubsub.publish(APP_CHANGED, { appId: app.id });
    return { webhookSecret, previousValidUntil: iso(until) };
  }

  /** Where and with which secrets (current first) to sign the app's webhooks; null without a webhookUrl. */
  async webhookTarget(appId: string): Promise<{ url: string; secrets: string[] } | null> {
    const app = await this.repo.findApp(appId);
    if (!app?.webhookUrl) return null;
    const secrets = [this.cipher.decryptString(app.webhookSecretEnc, { table: 'apps', column: 'webhook_secret_enc', id: app.id })];
    if (app.webhookSecretPrevEnc && (app.webhookSecretPrevUntil ?? 0) > this.clock.now()) {
      secrets.push(this.cipher.decryptString(app.webhookSecretPrevEnc, { table: 'apps', column: 'webhook_secret_prev_enc', id: app.id }));
    }
    return { url: app.webhookUrl, secrets };
  }

  /**
   * Of `appIds`, those without a webhookUrl, as read in the caller's transaction `m`: the outbox
   * writes their events as `no_endpoint` at once (read after the events' time, so the rule of the
   * webhook dispatcher holds: an event is finished without a delivery only on a reading of the app
   * made after the event was due).
   */
  appsWithoutWebhook(m: EntityManager, appIds: string[]): Promise<Set<string>> {
    return this.repo.withoutWebhook(m, appIds);
  }

  /** SQLite: appsWithoutWebhook in the caller's synchronous transaction (onSqliteConnection). */
  appsWithoutWebhookSqlite(db: SqliteSession, appIds: string[]): Set<string> {
    return this.repo.withoutWebhookSqlite(db, appIds);
  }

  /** PostgreSQL: whether the app `appId` (an SQL expression) has no webhookUrl, read by the caller's statement. */
  withoutWebhookSql(appId: string): string {
    return this.repo.withoutWebhookSql(appId);
  }

  /** The app registered with this `resource` (TAC: a challenge's `iss`), or null. */
  findByResource(resource: string): Promise<AppEntity | null> {
    return this.repo.findByResource(resource);
  }

  /**
   * TAC settings, checked before anything is written: `resource` (null removes it) and
   * `challengeJwks` (null removes them). Undefined fields are left as they are.
   */
  private async txnSettingsOrThrow(resource: string | null | undefined, jwks: unknown, appId?: string): Promise<Pick<Partial<AppEntity>, 'resource' | 'challengeJwks'>> {
    const out: Pick<Partial<AppEntity>, 'resource' | 'challengeJwks'> = {};
    if (resource !== undefined && resource !== null) {
      const problem = resourceProblem(resource, this.config.webhookAllowPrivate, this.config.issuer);
      if (problem) throw new AppError('validation_failed', problem);
      for (const spelling of resourceSpellings(new URL(resource))) {
        const holder = await this.repo.findByResource(spelling);
        if (holder && holder.id !== appId) throw new AppError('conflict', 'another app has registered this resource');
      }
    }
    if (resource !== undefined) out.resource = resource;
    if (jwks !== undefined) out.challengeJwks = jwks === null ? null : await validateChallengeJwksOrThrow(jwks);
    return out;
  }

  /** A resource taken by another app in between (the unique index decides): 409, nothing written. */
  private async uniqueResourceOrConflict(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'another app has registered this resource');
      throw err;
    }
  }

  private checkWebhookUrl(url: string | undefined): void {
    const problem = url === undefined ? null : webhookUrlProblem(url, this.config.webhookAllowPrivate);
    if (problem) throw new AppError('validation_failed', problem);
  }

  /** The app's display name (approval pages) — never its secrets. */
  async name(id: string): Promise<string> {
    return (await this.findOrThrow(id)).name;
  }

  private newKey(appId: string, apiKey: string, now: number): AppApiKeyEntity {
    return Object.assign(new AppApiKeyEntity(), { id: newId('apiKey'), appId, keyHash: hashSecret(apiKey), createdAt: now, revokedAt: null });
  }

  private toDto(app: AppEntity, keys: AppApiKeyEntity[]): AppDto {
    return {
      id: app.id,
      name: app.name,
      webhookUrl: app.webhookUrl,
      origins: app.origins,
      approvalUrlToAgent: app.approvalUrlToAgent,
      resource: app.resource,
      challengeJwks: app.challengeJwks,
      apiKeys: keys.map((k) => ({ id: k.id, createdAt: iso(k.createdAt) })),
      createdAt: iso(app.createdAt),
    };
  }
}
