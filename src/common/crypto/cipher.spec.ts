import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Cipher, DecryptionError, keyId, sealedKeyId } from './cipher.js';
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

  describe('with previous master keys (MASTER_KEY_PREVIOUS)', () => {
    const keyA = randomBytes(32);
    const keyB = randomBytes(32);
    const keyC = randomBytes(32);
    const underA = new Cipher(keyA).encrypt('totp secret', ctx);
    const underC = new Cipher(keyC).encrypt('webhook secret', ctx);
    const sut = new Cipher(keyB, [keyA, keyC]);

    it('decrypts values sealed under any previous key', () => {
      expect(sut.decryptString(underA, ctx)).toBe('totp secret');
      expect(sut.decryptString(underC, ctx)).toBe('webhook secret');
    });

    it('encrypts under the current key only', () => {
      const sealed = sut.encrypt('new', ctx);
      expect(sealedKeyId(sealed)).toBe(keyId(keyB));
      expect(sut.currentKeyId).toBe(keyId(keyB));
      expect(() => new Cipher(keyA).decrypt(sealed, ctx)).toThrow(DecryptionError);
    });

    it('still binds a value sealed under a previous key to its row', () => {
      expect(() => sut.decrypt(underA, { ...ctx, id: 'fac_2' })).toThrow('authentication failed');
    });

    it('re-encrypts under the current key for the same row, and refuses a value moved to another row', () => {
      expect(sut.isCurrent(underA)).toBe(false);
      const rekeyed = sut.reencrypt(underA, ctx);
      expect(sut.isCurrent(rekeyed)).toBe(true);
      expect(new Cipher(keyB).decryptString(rekeyed, ctx)).toBe('totp secret');
      expect(() => new Cipher(keyB).decrypt(rekeyed, { ...ctx, id: 'fac_2' })).toThrow(DecryptionError);
      expect(() => sut.reencrypt(underA, { ...ctx, id: 'fac_2' })).toThrow(DecryptionError);
    });

    it('names the key id, the row and MASTER_KEY_PREVIOUS when a former key is missing, never a key', () => {
      const withoutA = new Cipher(keyB, [keyC]);
      try {
        withoutA.decrypt(underA, ctx);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(DecryptionError);
        const message = (err as Error).message;
        expect(message).toContain(`factors.secret_enc of fac_1 is sealed under master key id ${keyId(keyA)}`);
        expect(message).toContain('MASTER_KEY_PREVIOUS');
        for (const key of [keyA, keyB, keyC]) expect(message).not.toContain(key.toString('base64'));
      }
    });

    it('refuses a previous key of the wrong length', () => {
      expect(() => new Cipher(keyB, [randomBytes(16)])).toThrow('master key must be 32 bytes');
    });
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
