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
  constructor(reason: string) {
    super(`decryption failed: ${reason}`);
    this.name = 'DecryptionError';
  }
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
    if (primary.length !== 32) throw new Error('master key must be 32 bytes');
    this.primaryId = keyId(primary);
    this.keys.set(this.primaryId, primary);
    for (const key of previous) this.keys.set(keyId(key), key);
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
    if (!key) throw new DecryptionError('unknown key id');
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
