import { generateKeyPairSync, sign } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { encodedHeader, signEs256Jws, signUnderHeader, verifyEs256Signature } from './keys.service.js';

describe('signEs256Jws', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const claims = { iss: 'https://mfa-proxy.test', sub: 'usr_1', aud: ['https://mfa-proxy.test', 'app_1'], jti: 'j1', iat: 1_700_000_000, exp: 4_000_000_000, scope: 'files:read', act: { sub: 'agt_1' } };

  it('writes a compact JWS that jose verifies as ES256 with the given typ and kid', async () => {
    const token = await signEs256Jws({ typ: 'at+jwt', kid: 'k1' }, claims, privateKey);
    const { payload, protectedHeader } = await jwtVerify(token, publicKey, { algorithms: ['ES256'], typ: 'at+jwt', issuer: claims.iss, audience: 'app_1' });
    expect(protectedHeader).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' });
    expect(payload).toEqual(claims);
  });

  it('signs with a 64-byte R ‖ S signature (RFC 7518 §3.4), not DER', async () => {
    const token = await signEs256Jws({ typ: 'at+jwt', kid: 'k1' }, claims, privateKey);
    expect(Buffer.from(token.split('.')[2], 'base64url')).toHaveLength(64);
    expect(decodeProtectedHeader(token).alg).toBe('ES256');
  });

  it('is refused by jose once a claim is changed, or under another key', async () => {
    const token = await signEs256Jws({ typ: 'at+jwt', kid: 'k1' }, claims, privateKey);
    const [h, , sig] = token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, scope: 'files:*' })).toString('base64url')}.${sig}`;
    await expect(jwtVerify(forged, publicKey, { algorithms: ['ES256'] })).rejects.toMatchObject({ code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    await expect(jwtVerify(token, other, { algorithms: ['ES256'] })).rejects.toMatchObject({ code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  });

  it('under encodedHeader, each signature carries its own typ and kid, in any order and after many keys (each header encoded once and kept)', async () => {
    const pairs = [
      ['at+jwt', 'k1'], ['mfa-proxy+jwt', 'k1'], ['at+jwt', 'k2'],
      ...Array.from({ length: 70 }, (_, i) => ['at+jwt', `rotated-${i}`]),
      ['at+jwt', 'k1'], ['mfa-proxy+jwt', 'k1'],
      // Pairs that a space-joined cache key would confuse.
      ['a b', 'c'], ['a', 'b c'], ['a', 'b c'], ['a b', 'c'],
    ] as const;
    for (const [typ, kid] of pairs) {
      const token = await signUnderHeader(encodedHeader(typ, kid), claims, privateKey);
      const { protectedHeader, payload } = await jwtVerify(token, publicKey, { algorithms: ['ES256'], typ });
      expect(protectedHeader).toEqual({ alg: 'ES256', typ, kid });
      expect(payload).toEqual(claims);
    }
  });

  it('signEs256Jws writes every header parameter it is given (tests forge extension headers with it)', async () => {
    const token = await signEs256Jws({ typ: 'at+jwt', kid: 'k1', crit: ['exp'] }, claims, privateKey);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: 'k1', crit: ['exp'] });
  });

  it('reports a key that cannot sign as a rejected promise, not a throw', async () => {
    await expect(signEs256Jws({ typ: 'at+jwt', kid: 'k1' }, claims, publicKey)).rejects.toBeInstanceOf(Error);
  });
});

describe('verifyEs256Signature', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const input = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9';
  const p1363 = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });

  it('accepts an R ‖ S signature of the input under the key', async () => {
    expect(await verifyEs256Signature(input, p1363, publicKey)).toBe(true);
  });

  it('refuses another input, another key, a flipped bit, a DER signature and a short one', async () => {
    const flipped = Buffer.from(p1363);
    flipped[10] ^= 1;
    const der = sign('sha256', Buffer.from(input), privateKey);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(await verifyEs256Signature(`${input}x`, p1363, publicKey)).toBe(false);
    expect(await verifyEs256Signature(input, p1363, other)).toBe(false);
    expect(await verifyEs256Signature(input, flipped, publicKey)).toBe(false);
    expect(await verifyEs256Signature(input, der, publicKey)).toBe(false);
    expect(await verifyEs256Signature(input, p1363.subarray(0, 63), publicKey)).toBe(false);
  });

  it('is false, not a throw, with a key that cannot verify ES256', async () => {
    const ed = generateKeyPairSync('ed25519').publicKey;
    expect(await verifyEs256Signature(input, p1363, ed)).toBe(false);
  });
});
