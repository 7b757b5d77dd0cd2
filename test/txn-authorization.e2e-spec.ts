import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { bearer, createTenant } from './support/fixtures.js';

/**
 * Issue 13, Transaction Authorization Challenge (draft-rosomakho-oauth-txn-challenge-00; API.md
 * "Transaction Authorization Challenge"): apps register a resource and challenge keys; an agent
 * presents the app-signed challenge, a human approves through the real approval endpoint, the agent
 * polls for a single-use access token, and the app consumes it once with `{ token, txn }`.
 */
let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

const admin = () => bearer(t.adminToken);
const problem = (status: number, code: string) => expect.objectContaining({ status, code, detail: expect.any(String) });
const uniqueResource = () => `https://api-${randomBytes(6).toString('hex')}.acme.example`;

/** An app's challenge-signing key pair (the public JWK is what it registers). */
interface SigningKey {
  alg: 'ES256' | 'EdDSA' | 'RS256';
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(alg: SigningKey['alg'] = 'ES256'): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid: `k-${randomUUID()}` } };
}

describe('registration of resource and challengeJwks (POST/PATCH /v1/apps)', () => {
  it('stores the resource and the public keys, returns them in the app, and removes them with null', async () => {
    const key = await signingKey();
    const ed = await signingKey('EdDSA');
    const resource = uniqueResource();
    const created = await t.http.post('/v1/apps').set(admin()).send({ name: 'acme', resource, challengeJwks: { keys: [key.jwk, ed.jwk] } }).expect(201);
    expect(created.body).toMatchObject({ resource, challengeJwks: { keys: [key.jwk, ed.jwk] } });
    const got = await t.http.get(`/v1/apps/${created.body.id}`).set(admin()).expect(200);
    expect(got.body).toMatchObject({ resource, challengeJwks: { keys: [key.jwk, ed.jwk] } });

    const patched = await t.http.patch(`/v1/apps/${created.body.id}`).set(admin()).send({ resource: null, challengeJwks: null }).expect(200);
    expect(patched.body).toMatchObject({ resource: null, challengeJwks: null });
    // The resource is free again: another app may take it.
    await t.http.post('/v1/apps').set(admin()).send({ name: 'other', resource }).expect(201);
  });

  it('an app without them shows null for both', async () => {
    const tenant = await createTenant(t);
    expect((await t.http.get(`/v1/apps/${tenant.appId}`).set(admin()).expect(200)).body).toMatchObject({ resource: null, challengeJwks: null });
  });

  it('refuses bad input with 400 and changes nothing: private keys, symmetric keys, other curves, bad resources, oversized sets', async () => {
    const key = await signingKey();
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(privateKey);
    const { publicKey: p384 } = await generateKeyPair('ES384', { extractable: true });
    const resource = uniqueResource();
    const app = (await t.http.post('/v1/apps').set(admin()).send({ name: 'acme', resource, challengeJwks: { keys: [key.jwk] } }).expect(201)).body;
    const bad: [string, Record<string, unknown>][] = [
      ['a private EC key', { challengeJwks: { keys: [privateJwk] } }],
      ['a public key with a private member', { challengeJwks: { keys: [{ ...key.jwk, d: privateJwk.d }] } }],
      ['a symmetric key', { challengeJwks: { keys: [{ kty: 'oct', k: randomBytes(32).toString('base64url') }] } }],
      ['a P-384 key', { challengeJwks: { keys: [await exportJWK(p384)] } }],
      ['an HMAC alg on an EC key', { challengeJwks: { keys: [{ ...key.jwk, alg: 'HS256' }] } }],
      ['no keys', { challengeJwks: { keys: [] } }],
      ['eleven keys', { challengeJwks: { keys: Array.from({ length: 11 }, (_, i) => ({ ...key.jwk, kid: `k${i}` })) } }],
      ['an oversized key set', { challengeJwks: { keys: [{ ...key.jwk, kid: 'x'.repeat(17_000) }] } }],
      ['not a key set', { challengeJwks: 'keys' }],
      ['a broken key', { challengeJwks: { keys: [{ ...key.jwk, x: 'AAAA' }] } }],
      ['a resource that is no URL', { resource: 'not a url' }],
      ['a relative resource', { resource: '/api' }],
      ['an http resource off loopback', { resource: 'http://api.acme.example' }],
      ['a resource with a fragment', { resource: 'https://api.acme.example/#x' }],
      ['a resource with a query', { resource: 'https://api.acme.example/?a=1' }],
      ['a resource with credentials', { resource: 'https://u:p@api.acme.example' }],
      ["a resource on this service's origin", { resource: `${t.config.publicUrl}/v1` }],
      ['a resource that is not a string', { resource: 42 }],
    ];
    for (const [name, body] of bad) {
      const res = await t.http.post('/v1/apps').set(admin()).send({ name: 'bad', resource: uniqueResource(), ...body });
      expect(res.status, `${name} (POST): ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body, name).toEqual(problem(400, 'validation_failed'));
      const patch = await t.http.patch(`/v1/apps/${app.id}`).set(admin()).send(body);
      expect(patch.status, `${name} (PATCH)`).toBe(400);
    }
    // Nothing changed on the app.
    expect((await t.http.get(`/v1/apps/${app.id}`).set(admin()).expect(200)).body).toMatchObject({ resource, challengeJwks: { keys: [key.jwk] } });
  });

  it('a resource is unique across apps: 409 conflict on POST and PATCH, nothing changed', async () => {
    const resource = uniqueResource();
    await t.http.post('/v1/apps').set(admin()).send({ name: 'first', resource }).expect(201);
    const dup = await t.http.post('/v1/apps').set(admin()).send({ name: 'second', resource }).expect(409);
    expect(dup.body).toEqual(problem(409, 'conflict'));
    const other = await createTenant(t, undefined, { resource: uniqueResource() });
    const before = (await t.http.get(`/v1/apps/${other.appId}`).set(admin()).expect(200)).body;
    expect((await t.http.patch(`/v1/apps/${other.appId}`).set(admin()).send({ resource, name: 'renamed' }).expect(409)).body).toEqual(problem(409, 'conflict'));
    expect((await t.http.get(`/v1/apps/${other.appId}`).set(admin()).expect(200)).body).toEqual(before);
    // Its own resource again is no conflict.
    await t.http.patch(`/v1/apps/${other.appId}`).set(admin()).send({ resource: before.resource }).expect(200);
  });

  it('http on loopback is accepted when private targets are allowed (the test default)', async () => {
    const res = await t.http.post('/v1/apps').set(admin()).send({ name: 'dev', resource: `http://127.0.0.1:47301/${randomBytes(4).toString('hex')}` }).expect(201);
    expect(res.body.resource).toMatch(/^http:\/\/127\.0\.0\.1:47301\//);
  });
});
