import { generateKeyPairSync } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { signEs256Jws } from './keys.service.js';

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

  it('reports a key that cannot sign as a rejected promise, not a throw', async () => {
    await expect(signEs256Jws({ typ: 'at+jwt', kid: 'k1' }, claims, publicKey)).rejects.toBeInstanceOf(Error);
  });
});
