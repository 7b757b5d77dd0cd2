import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { sha256 } from './tokens.js';

/** Where an encrypted value lives. It is the GCM additional data, so a ciphertext cannot move rows. */
export interface CipherContext {
  table: string;
  column: string;
  id: string;
}

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class DecryptionError extends Error {
  constructor(readonly reason: string) {
    super(`decryption failed: ${reason}`);
    this.name = 'DecryptionError';
  }
}

/** The key id a sealed value names (`v1.<keyId>....`), or null if it is not in our format. */
export function sealedKeyId(sealed: string): string | null {
  const parts = sealed.split('.');
  return parts.length === 5 && parts[0] === VERSION ? parts[1] : null;
}

/** A short, public identifier of a master key: the first 8 bytes of its SHA-256, hex. */
export function keyId(key: Buffer): string {
  return sha256(Buffer.concat([Buffer.from('mfa-proxy key id\0'), key])).subarray(0, 8).toString('hex');
}

function aad(ctx: CipherContext): Buffer {
  // Length-prefixed parts: "a.b" + "c" and "a" + "b.c" must not collide.
  return Buffer.from(
    [ctx.table, ctx.column, ctx.id].map((p) => `${Buffer.byteLength(p)}:${p}`).join('|'),
    'utf8',
  );
}

/**
 * AES-256-GCM under the master key. Output: `v1.<keyId>.<iv>.<ciphertext>.<tag>` (base64url parts).
 * Older master keys may be given for decryption only, so the master key can rotate.
 */
export class Cipher {
  private readonly primaryId: string;
  private readonly keys = new Map<string, Buffer>();

  constructor(primary: Buffer, previous: Buffer[] = []) {
    if (primary.length !== 32 || previous.some((k) => k.length !== 32)) throw new Error('master key must be 32 bytes');
    this.primaryId = keyId(primary);
    for (const key of previous) this.keys.set(keyId(key), key);
    this.keys.set(this.primaryId, primary);
  }

  /** The id of the key everything is encrypted under (MASTER_KEY). */
  get currentKeyId(): string {
    return this.primaryId;
  }

  /** Whether a sealed value is already under the current key (a rekey leaves it alone). */
  isCurrent(sealed: string): boolean {
    return sealedKeyId(sealed) === this.primaryId;
  }

  /**
   * The same plaintext sealed under the current key, for the same row: the context is the
   * additional data of both the decryption and the encryption, so a value that was moved to
   * another row fails here instead of being re-bound to it.
   */
  reencrypt(sealed: string, ctx: CipherContext): string {
    return this.encrypt(this.decrypt(sealed, ctx), ctx);
  }

  encrypt(plaintext: string | Buffer, ctx: CipherContext): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.primaryId)!, iv);
    cipher.setAAD(aad(ctx));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [VERSION, this.primaryId, iv.toString('base64url'), ct.toString('base64url'), tag.toString('base64url')].join('.');
  }

  decrypt(sealed: string, ctx: CipherContext): Buffer {
    const parts = sealed.split('.');
    if (parts.length !== 5 || parts[0] !== VERSION) throw new DecryptionError('unknown format');
    const [, kid, ivPart, ctPart, tagPart] = parts;
    const key = this.keys.get(kid);
    if (!key) {
      // The operator rotated MASTER_KEY but this value was sealed under a former key: say which, and what to do.
      throw new DecryptionError(
        `${ctx.table}.${ctx.column} of ${ctx.id} is sealed under master key id ${kid}, which is neither MASTER_KEY (key id ${this.primaryId}) nor in MASTER_KEY_PREVIOUS; ` +
          'start with MASTER_KEY_PREVIOUS set to the former key and run `npm run rekey` (README: "Rotating the master key")',
      );
    }
    const iv = Buffer.from(ivPart, 'base64url');
    const tag = Buffer.from(tagPart, 'base64url');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new DecryptionError('bad iv or tag');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(ctx));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(Buffer.from(ctPart, 'base64url')), decipher.final()]);
    } catch {
      // GCM authentication failed: tampered ciphertext, wrong key or wrong row. Fail closed.
      throw new DecryptionError('authentication failed');
    }
  }

  decryptString(sealed: string, ctx: CipherContext): string {
    return this.decrypt(sealed, ctx).toString('utf8');
  }
}
