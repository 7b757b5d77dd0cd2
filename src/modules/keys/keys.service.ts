import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import type { JWK, JWTPayload } from 'jose';
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
  publicKey: KeyObject;
  /** The private half, for signing (null once retired). */
  privateKey: KeyObject | null;
  retired: boolean;
}

const base64url = (json: unknown) => Buffer.from(JSON.stringify(json)).toString('base64url');

/** Encoded JWS headers by typ and kid: a handful (the types we sign times the keys in use), each encoded once. */
const headers = new Map<string, string>();

/** The encoded protected header `{"alg":"ES256","typ":…,"kid":…}` of what KeysService signs, encoded once per pair. */
export function encodedHeader(typ: string, kid: string): string {
  // A key no typ or kid can share with another pair (a space-joined one could: "a b"+"c", "a"+"b c").
  const name = JSON.stringify([typ, kid]);
  let encoded = headers.get(name);
  if (encoded === undefined) {
    if (headers.size >= 64) headers.clear(); // keys retired long ago: never more than a few live
    encoded = base64url({ alg: SIGNING_ALG, typ, kid });
    headers.set(name, encoded);
  }
  return encoded;
}

/**
 * A compact JWS (RFC 7515 §7.1) signed ES256 (RFC 7518 §3.4: ECDSA P-256 SHA-256, the signature
 * as R ‖ S, 64 bytes: dsaEncoding ieee-p1363), by node:crypto's sign with the cached KeyObject, on
 * libuv's thread pool (the callback form). The event loop keeps only the hand-off: 5.5 µs per
 * signature, against 22 µs for the synchronous sign and 9 µs for WebCrypto's (50 concurrent
 * signatures, one 2-core machine); under the token bench the synchronous sign was a third of the
 * service's busy time. keys.service.spec.ts checks jose accepts what this writes.
 */
export function signEs256Jws(header: { typ: string; kid: string; [param: string]: unknown }, payload: JWTPayload, key: KeyObject): Promise<string> {
  return signUnderHeader(base64url({ alg: SIGNING_ALG, ...header }), payload, key);
}

/** signEs256Jws under a header already encoded (encodedHeader). */
export function signUnderHeader(header: string, payload: JWTPayload, key: KeyObject): Promise<string> {
  const input = `${header}.${base64url(payload)}`;
  return new Promise((resolve, reject) =>
    sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }, (err, signature) =>
      err ? reject(err) : resolve(`${input}.${signature.toString('base64url')}`),
    ),
  );
}

/**
 * Whether `signature` (R ‖ S, 64 bytes) is an ES256 signature of the ASCII `signingInput` under
 * `key`: node:crypto's verify with the cached KeyObject, on the thread pool like signEs256Jws.
 * Anything else than a 64-byte signature, or a key that cannot verify, is false.
 */
export function verifyEs256Signature(signingInput: string, signature: Buffer, key: KeyObject): Promise<boolean> {
  if (signature.length !== 64) return Promise.resolve(false);
  return new Promise((resolve) =>
    verify('sha256', Buffer.from(signingInput, 'latin1'), { key, dsaEncoding: 'ieee-p1363' }, signature, (err, ok) => resolve(!err && ok)),
  );
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
  /** Changes whenever the set of keys changes (a key added, retired or gone): caches of verified tokens compare it. */
  private keySet = 0;

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
    return signUnderHeader(encodedHeader(typ, key.kid), payload, key.privateKey);
  }

  /** Identifies the current set of keys and their states: it changes when any key is added, retired or dropped. */
  get generation(): number {
    return this.keySet;
  }

  /** The public key for `kid`, or null. An unknown kid triggers at most one reload per 5 s. */
  async publicKey(kid: string): Promise<KeyObject | null> {
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
    let changed = rows.length !== this.keys.size;
    for (const row of rows) {
      const known = this.keys.get(row.kid);
      const loaded = known ?? (await this.loadKey(row));
      if (!known || loaded.retired !== (row.retiredAt !== null)) changed = true;
      loaded.retired = row.retiredAt !== null;
      next.set(row.kid, loaded);
      // Newest non-retired key signs (rows are ordered newest first).
      if (!active && !loaded.retired && loaded.privateKey) active = loaded;
    }
    if (changed) this.keySet++;
    this.keys = next;
    this.active = active;
    this.loadedAt = now;
  }

  private async loadKey(row: SigningKeyEntity): Promise<LoadedKey> {
    const publicJwk = JSON.parse(row.publicJwk) as JWK;
    if (row.alg !== SIGNING_ALG) throw new Error(`signing key ${row.kid} has algorithm ${row.alg}, not ${SIGNING_ALG}`);
    const publicKey = createPublicKey({ key: publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    let privateKey: KeyObject | null = null;
    if (row.retiredAt === null) {
      const privateJwk = JSON.parse(this.cipher.decryptString(row.privateJwkEnc, { table: 'signing_keys', column: 'private_jwk_enc', id: row.kid }));
      privateKey = createPrivateKey({ key: privateJwk, format: 'jwk' });
    }
    return { kid: row.kid, publicJwk, publicKey, privateKey, retired: row.retiredAt !== null };
  }

  private async createKey(): Promise<string> {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const kid = randomBytes(12).toString('base64url');
    const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: SIGNING_ALG, use: 'sig' };
    const privateJwk = privateKey.export({ format: 'jwk' });
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
