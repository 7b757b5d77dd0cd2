import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Cipher, DecryptionError, keyId } from './cipher.js';
import { hashSecret, randomToken, safeEqual, secretMatchesHash } from './tokens.js';

const ctx = { table: 'factors', column: 'secret_enc', id: 'fac_1' };

describe(Cipher.name, () => {
  const sut = new Cipher(randomBytes(32));

  it('round-trips a value', () => {
    const sealed = sut.encrypt('JBSWY3DPEHPK3PXP', ctx);
    expect(sealed).not.toContain('JBSWY3DPEHPK3PXP');
    expect(sut.decryptString(sealed, ctx)).toBe('JBSWY3DPEHPK3PXP');
  });

  it('uses a fresh IV each time', () => {
    expect(sut.encrypt('same', ctx)).not.toBe(sut.encrypt('same', ctx));
  });

  it('fails closed on a flipped bit anywhere in iv, ciphertext or tag', () => {
    const sealed = sut.encrypt('secret value', ctx);
    const parts = sealed.split('.');
    for (const index of [2, 3, 4]) {
      const bytes = Buffer.from(parts[index], 'base64url');
      bytes[0] ^= 0x01;
      const tampered = [...parts.slice(0, index), bytes.toString('base64url'), ...parts.slice(index + 1)].join('.');
      expect(() => sut.decrypt(tampered, ctx)).toThrow(DecryptionError);
    }
  });

  it('refuses a ciphertext copied to another row, column or table', () => {
    const sealed = sut.encrypt('secret value', ctx);
    expect(() => sut.decrypt(sealed, { ...ctx, id: 'fac_2' })).toThrow(DecryptionError);
    expect(() => sut.decrypt(sealed, { ...ctx, column: 'other' })).toThrow(DecryptionError);
    expect(() => sut.decrypt(sealed, { ...ctx, table: 'apps' })).toThrow(DecryptionError);
    // Boundaries between parts matter: "a.b"+"c" is not "a"+"b.c".
    const tricky = sut.encrypt('x', { table: 'a.b', column: 'c', id: '1' });
    expect(() => sut.decrypt(tricky, { table: 'a', column: 'b.c', id: '1' })).toThrow(DecryptionError);
  });

  it('refuses another master key, and decrypts with a previous key after rotation', () => {
    const oldKey = randomBytes(32);
    const old = new Cipher(oldKey);
    const sealed = old.encrypt('v', ctx);
    expect(() => sut.decrypt(sealed, ctx)).toThrow(DecryptionError);
    const rotated = new Cipher(randomBytes(32), [oldKey]);
    expect(rotated.decryptString(sealed, ctx)).toBe('v');
    expect(rotated.encrypt('v', ctx).split('.')[1]).not.toBe(keyId(oldKey));
  });

  it('refuses garbage', () => {
    for (const bad of ['', 'v1', 'v2.a.b.c.d', 'v1.unknown.a.b.c', `v1.${sut.encrypt('x', ctx).split('.')[1]}.AA.BB.CC`]) {
      expect(() => sut.decrypt(bad, ctx)).toThrow(DecryptionError);
    }
  });
});

describe('tokens', () => {
  it('makes prefixed 32-byte random tokens', () => {
    const token = randomToken('mpx_app_');
    expect(token).toMatch(/^mpx_app_[A-Za-z0-9_-]{43}$/);
    expect(randomToken('mpx_app_')).not.toBe(token);
  });

  it('matches a secret against its hash only', () => {
    const token = randomToken('mpx_sec_');
    const stored = hashSecret(token);
    expect(stored).not.toContain(token.slice(8));
    expect(secretMatchesHash(token, stored)).toBe(true);
    expect(secretMatchesHash(token + 'x', stored)).toBe(false);
    expect(secretMatchesHash('', stored)).toBe(false);
  });

  it('compares strings of different lengths without throwing', () => {
    expect(safeEqual('a', 'a')).toBe(true);
    expect(safeEqual('a', 'ab')).toBe(false);
  });
});
