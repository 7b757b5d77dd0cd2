import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { Clock } from '../../common/clock.js';
import { KeysRepository } from './keys.repository.js';
import { SigningKeyEntity, SYSTEM_APP_ID } from './signing-key.entity.js';

export const SIGNING_ALG = 'ES256';
/** Longest lifetime of anything we sign (agent tokens: 3600 s), plus clock skew. */
export const MAX_TOKEN_LIFETIME_MS = (3600 + 300) * 1000;

interface LoadedKey {
  kid: string;
  publicJwk: JWK;
  publicKey: CryptoKey;
  privateKey: CryptoKey | null;
  retired: boolean;
}

/**
 * The service's signing keys: ES256, private halves encrypted at rest, cached in memory.
 * Verification only ever uses these keys, looked up by `kid`; never a key named by a token.
 */
@Injectable()
export class KeysService implements OnApplicationBootstrap {
  private readonly logger = new Logger(KeysService.name);
  private keys = new Map<string, LoadedKey>();
  private active: LoadedKey | null = null;
  private loadedAt = 0;
  private lastMissReload = 0;
  private reloading: Promise<void> | null = null;

  constructor(
    private readonly repo: KeysRepository,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.reload();
    if (!this.active) {
      await this.createKey();
      await this.reload();
    }
  }

  /** Creates a new active key and retires the others (kept published until their tokens expire). */
  async rotate(): Promise<{ kid: string; retired: number }> {
    const kid = await this.createKey();
    const now = this.clock.now();
    const retired = await this.repo.retireOthers(kid, now, now + MAX_TOKEN_LIFETIME_MS);
    await this.reload();
    return { kid, retired };
  }

  async sign(payload: JWTPayload, typ: string): Promise<string> {
    await this.refreshIfStale();
    const key = this.active;
    if (!key?.privateKey) throw new Error('no active signing key');
    return new SignJWT(payload).setProtectedHeader({ alg: SIGNING_ALG, typ, kid: key.kid }).sign(key.privateKey);
  }

  /** The public key for `kid`, or null. An unknown kid triggers at most one reload per 5 s. */
  async publicKey(kid: string): Promise<CryptoKey | null> {
    const hit = this.keys.get(kid);
    if (hit) return hit.publicKey;
    const now = this.clock.now();
    if (now - this.lastMissReload < 5_000) return null;
    this.lastMissReload = now;
    await this.reload();
    return this.keys.get(kid)?.publicKey ?? null;
  }

  async jwks(): Promise<{ keys: JWK[] }> {
    await this.refreshIfStale();
    return { keys: [...this.keys.values()].map((k) => k.publicJwk) };
  }

  private async refreshIfStale(): Promise<void> {
    if (this.clock.now() - this.loadedAt > this.config.signingKeyReloadSeconds * 1000) await this.reload();
  }

  private reload(): Promise<void> {
    this.reloading ??= this.load().finally(() => (this.reloading = null));
    return this.reloading;
  }

  private async load(): Promise<void> {
    const now = this.clock.now();
    const rows = await this.repo.findPublished(now);
    const next = new Map<string, LoadedKey>();
    let active: LoadedKey | null = null;
    for (const row of rows) {
      const loaded = this.keys.get(row.kid) ?? (await this.loadKey(row));
      loaded.retired = row.retiredAt !== null;
      next.set(row.kid, loaded);
      // Newest non-retired key signs (rows are ordered newest first).
      if (!active && !loaded.retired && loaded.privateKey) active = loaded;
    }
    this.keys = next;
    this.active = active;
    this.loadedAt = now;
  }

  private async loadKey(row: SigningKeyEntity): Promise<LoadedKey> {
    const publicJwk = JSON.parse(row.publicJwk) as JWK;
    const publicKey = (await importJWK(publicJwk, row.alg)) as CryptoKey;
    let privateKey: CryptoKey | null = null;
    if (row.retiredAt === null) {
      const privateJwk = JSON.parse(this.cipher.decryptString(row.privateJwkEnc, { table: 'signing_keys', column: 'private_jwk_enc', id: row.kid }));
      privateKey = (await importJWK(privateJwk, row.alg)) as CryptoKey;
    }
    return { kid: row.kid, publicJwk, publicKey, privateKey, retired: row.retiredAt !== null };
  }

  private async createKey(): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
    const kid = randomBytes(12).toString('base64url');
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: SIGNING_ALG, use: 'sig' };
    const privateJwk = await exportJWK(privateKey);
    await this.repo.insert(
      Object.assign(new SigningKeyEntity(), {
        kid,
        appId: SYSTEM_APP_ID,
        alg: SIGNING_ALG,
        publicJwk: JSON.stringify(publicJwk),
        privateJwkEnc: this.cipher.encrypt(JSON.stringify(privateJwk), { table: 'signing_keys', column: 'private_jwk_enc', id: kid }),
        createdAt: this.clock.now(),
        retiredAt: null,
        publishUntil: null,
      }),
    );
    this.logger.log({ kid }, 'created signing key');
    return kid;
  }
}
