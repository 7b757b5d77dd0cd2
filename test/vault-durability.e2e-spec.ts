import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, world } from './support/fixtures.js';
import { upstreamProvider, type Rotation, type UpstreamMode } from './support/upstream.js';
import { proof, worker } from './support/worker.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

/** A user's connection reached by a worker's task (scope `connection:drive`), backed by a loopback provider. */
async function setup(mode: UpstreamMode = 'ok') {
  const original = `rt-original-${randomUUID()}`;
  const upstream = await upstreamProvider(original);
  upstream.state.mode = mode;
  const w = await worker();
  const base = await world(t, { permissionBoundaries: ['research:read', 'connection:drive'] });
  const task = (await t.http.post('/v1/tasks').set(bearer(base.token)).send({ taskId: 'durable-1', scopes: ['connection:drive'], workerJwk: w.jwk }).expect(201)).body;
  const con = await t.http.post('/v1/connections').set(bearer(base.tenant.apiKey)).send({ name: 'drive', tokenEndpoint: upstream.url, clientId: upstream.clientId, clientSecret: upstream.clientSecret, scopes: ['drive.read'] }).expect(201);
  await t.http.put(`/v1/users/${base.userId}/connections/${con.body.id}`).set(bearer(base.tenant.apiKey)).send({ refreshToken: original }).expect(204);
  const path = `/v1/tasks/${task.id}/connections/${con.body.id}/token`;
  const draw = async () => t.http.post(path).set('DPoP', await proof(w, 'POST', path));
  const stored = async () =>
    (await t.app.get(DataSource).createQueryBuilder().select('u.access_token_enc', 'accessTokenEnc').addSelect('u.scope', 'scope').from('user_connections', 'u').where('u.connection_id = :c', { c: con.body.id }).getRawOne()) as { accessTokenEnc: string | null; scope: string | null };
  /** The provider answers normally again and the cached access token is dropped: the next draw refreshes. */
  const refreshAgain = async () => {
    upstream.state.mode = 'ok';
    await t.app.get(DataSource).createQueryBuilder().update('user_connections').set({ accessTokenEnc: null, accessTokenExpiresAt: null }).where('connection_id = :c', { c: con.body.id }).execute();
    return draw();
  };
  return { original, upstream, draw, stored, refreshAgain, appId: base.tenant.appId };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** A trigger that fails any write of an access token into user_connections for one app. */
async function refuseAccessTokenCache(appId: string): Promise<() => Promise<void>> {
  expect(appId).toMatch(/^app_[A-Za-z0-9_-]+$/); // interpolated into DDL below
  const ds = t.app.get(DataSource);
  const name = `test_refuse_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const when = `NEW.app_id = '${appId}' AND NEW.access_token_enc IS NOT NULL`;
  if (usingPostgres()) {
    await ds.query(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = '22001'; END $$`);
    await ds.query(`CREATE TRIGGER ${name} BEFORE UPDATE ON user_connections FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION ${name}()`);
    return async () => {
      await ds.query(`DROP TRIGGER ${name} ON user_connections`);
      await ds.query(`DROP FUNCTION ${name}()`);
    };
  }
  await ds.query(`CREATE TRIGGER ${name} BEFORE UPDATE ON user_connections FOR EACH ROW WHEN ${when} BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
  return async () => void (await ds.query(`DROP TRIGGER ${name}`));
}

/** The refresh after a rotation presents the rotated refresh token, and it works. */
async function expectRotatedTokenPresentedNext(v: Setup) {
  expect(v.upstream.state.issuedRefresh).toHaveLength(1);
  const next = await v.refreshAgain();
  expect(v.upstream.state.seen).toEqual([v.original, v.upstream.state.issuedRefresh[0]]);
  expect(next.status).toBe(200);
  expect(next.body.access_token).toBe(v.upstream.state.issued[1]);
}

async function expectUpstreamError(res: { status: number; body: { code?: string } }) {
  expect(res.status).toBe(502);
  expect(res.body.code).toBe('upstream_error');
}

describe('the vault never loses a rotated refresh token (API.md v1.1)', () => {
  it.each([
    ['4 KB (over the 1024-character column)', 4 * 1024],
    ['100 KB', 100 * 1024],
  ])('a %s scope with a rotated refresh token: 200 with the access token and a bounded scope; the next refresh presents the rotated token', async (_label, bytes) => {
    const v = await setup('big_scope');
    v.upstream.state.scopeBytes = bytes;
    try {
      const res = await v.draw();
      expect(res.status).toBe(200);
      expect(res.body.access_token).toBe(v.upstream.state.issued[0]);
      // Whole scope tokens of what the provider granted, bounded to what is stored.
      expect(res.body.scope.length).toBeLessThanOrEqual(1024);
      expect(res.body.scope).toMatch(/^drive\.read( scope\.\d+)+$/);
      expect((await v.stored()).scope).toBe(res.body.scope);
      // Cached: the same answer without another upstream call.
      expect((await v.draw()).body).toEqual({ access_token: res.body.access_token, expires_in: expect.any(Number), scope: res.body.scope });
      expect(v.upstream.state.calls).toBe(1);
      await expectRotatedTokenPresentedNext(v);
    } finally {
      await v.upstream.close();
    }
  });

  it('an oversized access token (100 KB) is not cached: 502 upstream_error, and the rotated refresh token in the same answer is kept', async () => {
    const v = await setup('custom');
    v.upstream.state.respond = (r) => ({ status: 200, body: JSON.stringify({ ...r, access_token: `at-${'x'.repeat(100 * 1024)}`, token_type: 'Bearer', expires_in: 3600 }) });
    try {
      await expectUpstreamError(await v.draw());
      expect((await v.stored()).accessTokenEnc).toBeNull();
      await expectRotatedTokenPresentedNext(v);
    } finally {
      await v.upstream.close();
    }
  });

  const refused: [string, (r: Rotation) => string][] = [
    ['no access_token', (r) => JSON.stringify({ refresh_token: r.refresh_token, token_type: 'Bearer', expires_in: 3600 })],
    ['access_token not a string', (r) => JSON.stringify({ ...r, access_token: 42, token_type: 'Bearer', expires_in: 3600 })],
    ['access_token with a control character', (r) => JSON.stringify({ ...r, access_token: `${r.access_token}\u0000`, token_type: 'Bearer', expires_in: 3600 })],
    ['token_type that is not Bearer', (r) => JSON.stringify({ ...r, token_type: 'MAC', expires_in: 3600 })],
    ['token_type not a string', (r) => JSON.stringify({ ...r, token_type: 1, expires_in: 3600 })],
    ['expires_in as words', (r) => JSON.stringify({ ...r, token_type: 'Bearer', expires_in: 'soon' })],
    ['expires_in negative', (r) => JSON.stringify({ ...r, token_type: 'Bearer', expires_in: -5 })],
    ['expires_in not a finite number', (r) => `{"access_token":${JSON.stringify(r.access_token)},"refresh_token":${JSON.stringify(r.refresh_token)},"token_type":"Bearer","expires_in":1e400}`],
    ['JSON cut short after the refresh token', (r) => `{"refresh_token":${JSON.stringify(r.refresh_token)},"access_token":${JSON.stringify(r.access_token)},"expires_in":36`],
    ['trailing garbage after the object', (r) => `${JSON.stringify({ ...r, token_type: 'Bearer', expires_in: 3600 })} and more`],
  ];
  it.each(refused)('an unusable answer (%s): 502 upstream_error, nothing cached, the rotated refresh token kept', async (_label, body) => {
    const v = await setup('custom');
    v.upstream.state.respond = (r) => ({ status: 200, body: body(r) });
    try {
      await expectUpstreamError(await v.draw());
      expect((await v.stored()).accessTokenEnc).toBeNull();
      await expectRotatedTokenPresentedNext(v);
    } finally {
      await v.upstream.close();
    }
  });

  const accepted: [string, (r: Rotation) => object, { expires_in?: number; scope: string }][] = [
    ['unknown members, nested ones too, are ignored', (r) => ({ ...r, token_type: 'Bearer', expires_in: 3600, scope: 'drive.read', id_token: 'x.y.z', extra: { deep: [[{ a: 1 }]], s: '"}' } }), { scope: 'drive.read' }],
    ['token_type in lower case', (r) => ({ ...r, token_type: 'bearer', expires_in: 3600, scope: 'drive.read' }), { scope: 'drive.read' }],
    ['no expires_in (RFC 6749 §5.1: RECOMMENDED)', (r) => ({ ...r, token_type: 'Bearer', scope: 'drive.read' }), { scope: 'drive.read' }],
    ['a huge expires_in is capped at a day', (r) => ({ ...r, token_type: 'Bearer', expires_in: 1e12, scope: 'drive.read' }), { expires_in: 86_400, scope: 'drive.read' }],
    ['no scope means the requested scope (RFC 6749 §5.1)', (r) => ({ ...r, token_type: 'Bearer', expires_in: 3600 }), { scope: 'drive.read' }],
    ['a scope that is not a string means the requested scope', (r) => ({ ...r, token_type: 'Bearer', expires_in: 3600, scope: ['drive.write'] }), { scope: 'drive.read' }],
    [
      'scope tokens outside RFC 6749 §3.3 (NUL, quote, backslash, non-ASCII) are dropped',
      (r) => ({ ...r, token_type: 'Bearer', expires_in: 3600, scope: 'drive.read bad\u0000x "q" a\\b é  drive.meta' }),
      { scope: 'drive.read drive.meta' },
    ],
  ];
  it.each(accepted)('a usable answer (%s): 200, cached, the rotated refresh token kept', async (_label, body, expected) => {
    const v = await setup('custom');
    v.upstream.state.respond = (r) => ({ status: 200, body: JSON.stringify(body(r)) });
    try {
      const res = await v.draw();
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ access_token: v.upstream.state.issued[0], expires_in: expected.expires_in ?? expect.any(Number), scope: expected.scope });
      expect((await v.stored()).accessTokenEnc).not.toBeNull();
      await expectRotatedTokenPresentedNext(v);
    } finally {
      await v.upstream.close();
    }
  });

  it('a database failure after the refresh (caching the access token) does not lose the rotated refresh token', async () => {
    const v = await setup();
    // The database refuses to cache an access token for this app; storing a refresh token alone still works.
    const restore = await refuseAccessTokenCache(v.appId);
    try {
      expect((await v.draw()).status).toBe(500);
    } finally {
      await restore();
    }
    expect((await v.stored()).accessTokenEnc).toBeNull();
    await expectRotatedTokenPresentedNext(v);
    await v.upstream.close();
  });

  it('a 2 MB answer (rotated refresh token first) is read only up to a bound: 502 upstream_error, the rotated refresh token kept', async () => {
    const v = await setup('huge_body');
    try {
      await expectUpstreamError(await v.draw());
      expect((await v.stored()).accessTokenEnc).toBeNull();
      await expectRotatedTokenPresentedNext(v);
    } finally {
      await v.upstream.close();
    }
  });

  it('an answer that never ends: the worker gets 502 upstream_error within the upstream timeout, and the next draw is not stuck behind it', async () => {
    const v = await setup('endless');
    try {
      const started = Date.now();
      await expectUpstreamError(await v.draw());
      expect(Date.now() - started).toBeLessThan(15_000);
      v.upstream.state.mode = 'invalid_grant';
      // A new refresh is attempted (no single flight left hanging) and answered.
      expect((await v.draw()).status).toBe(409);
    } finally {
      await v.upstream.close();
    }
  }, 30_000);
});
