import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { KeysService, MAX_TOKEN_LIFETIME_MS } from '../src/modules/keys/keys.service.js';
import { startApp, type TestApp } from './support/app.js';
import { agentToken, bearer, world } from './support/fixtures.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

describe('signing keys', () => {
  it('stores the private key encrypted, never in clear', async () => {
    const rows: { kid: string; private_jwk_enc: string; public_jwk: string }[] = await t.app.get(DataSource).query('SELECT kid, private_jwk_enc, public_jwk FROM signing_keys');
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.private_jwk_enc).toMatch(/^v1\./);
      expect(row.private_jwk_enc).not.toContain('"d"');
      expect(JSON.parse(row.public_jwk).d).toBeUndefined();
    }
  });

  it('rotation: new tokens use the new key, old tokens keep verifying, the old key leaves the JWKS after its tokens expire', async () => {
    const w = await world(t);
    const oldKid = decodeProtectedHeader(w.token).kid!;
    const keys = t.app.get(KeysService);
    const { kid: newKid } = await keys.rotate();
    expect(newKid).not.toBe(oldKid);

    const fresh = await agentToken(t, w.agent);
    expect(decodeProtectedHeader(fresh).kid).toBe(newKid);
    await t.http.get('/v1/whoami').set(bearer(w.token)).expect(200);
    await t.http.get('/v1/whoami').set(bearer(fresh)).expect(200);
    const kids = (await t.http.get('/.well-known/jwks.json').expect(200)).body.keys.map((k: { kid: string }) => k.kid);
    expect(kids).toEqual(expect.arrayContaining([oldKid, newKid]));

    t.clock.advance(MAX_TOKEN_LIFETIME_MS + 120_000);
    try {
      const later = (await t.http.get('/.well-known/jwks.json').expect(200)).body.keys.map((k: { kid: string }) => k.kid);
      expect(later).toContain(newKid);
      expect(later).not.toContain(oldKid);
    } finally {
      t.clock.reset();
    }
  });
});
