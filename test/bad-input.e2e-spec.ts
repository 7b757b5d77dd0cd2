import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { bearer, world } from './support/fixtures.js';

let t: TestApp;
let w: Awaited<ReturnType<typeof world>>;
beforeAll(async () => {
  t = await startApp();
  w = await world(t);
});
afterAll(async () => {
  await t?.close();
});

type Auth = 'admin' | 'app';
interface Endpoint {
  method: 'post' | 'patch';
  path: () => string;
  auth: Auth;
  wrongTypes: Record<string, unknown>[];
  missing?: Record<string, unknown>;
}

const BIG = 'x'.repeat(70 * 1024);

const endpoints: Endpoint[] = [
  { method: 'post', path: () => '/v1/apps', auth: 'admin', wrongTypes: [{ name: 5 }, { name: 'a', origins: 'https://x' }, { name: 'a', webhookUrl: 'ftp://x' }, { name: 'a', origins: ['javascript:alert(1)'] }], missing: {} },
  { method: 'patch', path: () => `/v1/apps/${w.tenant.appId}`, auth: 'admin', wrongTypes: [{ name: [] }, { webhookUrl: 12 }, { name: '' }] },
  { method: 'post', path: () => '/v1/users', auth: 'app', wrongTypes: [{ externalId: 1, displayName: 'x' }, { externalId: 'x', displayName: { a: 1 } }, { externalId: 'x', displayName: 'x', email: 'not-an-email' }, { externalId: 'x'.repeat(201), displayName: 'x' }], missing: { displayName: 'x' } },
  {
    method: 'post', path: () => '/v1/agents', auth: 'app',
    wrongTypes: [
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: 'files:*' },
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: [1] },
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: ['Files:Delete'] },
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: ['*'] },
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: [], tokenTtl: '300' },
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: [], tokenTtl: 99999 },
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: [], jwks: 'x' },
      { userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: [], unknownField: true },
    ],
    missing: { name: 'a', model: 'm', permissionBoundaries: [] },
  },
  { method: 'patch', path: () => `/v1/agents/${w.agent.id}`, auth: 'app', wrongTypes: [{ status: 'revoked' }, { status: 'deleted' }, { permissionBoundaries: ['UPPER'] }, { name: 7 }] },
];

function call(e: Endpoint) {
  const req = t.http[e.method](e.path());
  return req.set(bearer(e.auth === 'admin' ? t.adminToken : w.tenant.apiKey));
}

function expectProblem(res: { status: number; body: Record<string, unknown>; headers: Record<string, string> }, status: number, code?: string) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String), code: code ?? expect.any(String) });
}

async function snapshot() {
  const agent = (await t.http.get(`/v1/agents/${w.agent.id}`).set(bearer(w.tenant.apiKey)).expect(200)).body;
  const agents = (await t.http.get('/v1/agents').set(bearer(w.tenant.apiKey)).expect(200)).body;
  const app = (await t.http.get(`/v1/apps/${w.tenant.appId}`).set(bearer(t.adminToken)).expect(200)).body;
  return { agent, agentCount: agents.length, app };
}

describe('bad input gets a 4xx problem and changes nothing', () => {
  for (const e of endpoints) {
    describe(`${e.method.toUpperCase()} ${e.path.toString().replace(/^\(\) => /, '')}`, () => {
      it('malformed JSON → 400 malformed_json', async () => {
        const before = await snapshot();
        const res = await call(e).set('Content-Type', 'application/json').send('{"name": "x",');
        expectProblem(res, 400, 'malformed_json');
        expect(await snapshot()).toEqual(before);
      });

      it('wrong types and values → 400 validation_failed', async () => {
        const before = await snapshot();
        for (const body of e.wrongTypes) {
          const res = await call(e).send(body);
          expectProblem(res, 400, 'validation_failed');
        }
        expect(await snapshot()).toEqual(before);
      });

      if (e.missing) {
        it('missing fields → 400 validation_failed', async () => {
          const res = await call(e).send(e.missing!);
          expectProblem(res, 400, 'validation_failed');
        });
      }

      it('a body over 64 KiB → 413 payload_too_large', async () => {
        const before = await snapshot();
        const res = await call(e).send({ name: BIG });
        expectProblem(res, 413, 'payload_too_large');
        expect(await snapshot()).toEqual(before);
      });

      it('a JSON array or scalar body → 400', async () => {
        expectProblem(await call(e).set('Content-Type', 'application/json').send('[1,2]'), 400);
        expectProblem(await call(e).set('Content-Type', 'application/json').send('"x"'), 400);
      });
    });
  }

  it('unsupported content type → 415', async () => {
    const res = await t.http.post('/v1/users').set(bearer(w.tenant.apiKey)).set('Content-Type', 'text/plain').send('externalId=x');
    expectProblem(res, 415, 'unsupported_media_type');
  });

  it('a form-encoded body is 415 unsupported_media_type outside /oauth (agent and app routes) and changes nothing; /oauth/token still takes forms', async () => {
    const before = await snapshot();
    const form = (path: string) => t.http.post(path).type('form');
    const attempts: [string, () => Promise<{ status: number; body: { code?: string } }>][] = [
      ['agent POST /v1/step-ups', () => form('/v1/step-ups').set(bearer(w.token)).send({ action: 'files:read' })],
      ['app POST /v1/users', () => form('/v1/users').set(bearer(w.tenant.apiKey)).send({ externalId: 'form-user', displayName: 'Form' })],
      ['app POST verify', () => form('/v1/mfa-proxy-tokens/verify').set(bearer(w.tenant.apiKey)).send({ token: 'x', action: 'files:read' })],
      ['app POST agents', () => form('/v1/agents').set(bearer(w.tenant.apiKey)).send({ userId: w.agent.userId, name: 'form-bot' })],
    ];
    for (const [label, call] of attempts) {
      const res = await call();
      expect(`${label}: ${res.status} ${res.body.code}`).toBe(`${label}: 415 unsupported_media_type`);
    }
    expect(await snapshot()).toEqual(before);
    // The refused form created no user: the same externalId is still free.
    await t.http.post('/v1/users').set(bearer(w.tenant.apiKey)).send({ externalId: 'form-user', displayName: 'Form' }).expect(201);
    await t.http.post('/oauth/token').auth(w.agent.id, w.agent.clientSecret).type('form').send({ grant_type: 'client_credentials' }).expect(200);
  });

  it('unknown and wrong-prefix ids → 404 not_found on every id route', async () => {
    const app = bearer(w.tenant.apiKey);
    const ids = ['usr_AAAAAAAAAAAAAAAAAAAAAA', w.agent.id.replace('agt_', 'usr_'), 'agt_x', "agt_' OR 1=1 --", '%00', 'a'.repeat(300)];
    for (const id of ids) {
      const enc = encodeURIComponent(id);
      for (const res of [
        await t.http.get(`/v1/users/${enc}`).set(app),
        await t.http.delete(`/v1/users/${enc}`).set(app),
        await t.http.get(`/v1/agents/${enc}`).set(app),
        await t.http.patch(`/v1/agents/${enc}`).set(app).send({ name: 'x' }),
        await t.http.post(`/v1/agents/${enc}/secret`).set(app),
        await t.http.delete(`/v1/agents/${enc}`).set(app),
        await t.http.get(`/v1/apps/${enc}`).set(bearer(t.adminToken)),
        await t.http.patch(`/v1/apps/${enc}`).set(bearer(t.adminToken)).send({ name: 'x' }),
        await t.http.post(`/v1/apps/${enc}/api-keys`).set(bearer(t.adminToken)),
        await t.http.delete(`/v1/apps/${w.tenant.appId}/api-keys/${enc}`).set(bearer(t.adminToken)),
      ]) {
        expectProblem(res, 404, 'not_found');
      }
    }
    const agentForUnknownUser = await t.http.post('/v1/agents').set(app).send({ userId: 'usr_AAAAAAAAAAAAAAAAAAAAAA', name: 'a', model: 'm', permissionBoundaries: [] });
    expectProblem(agentForUnknownUser, 404, 'not_found');
  });

  it('/oauth endpoints answer bad input in RFC 6749 form', async () => {
    for (const res of [
      await t.http.post('/oauth/token').set('Content-Type', 'application/json').send('{bad'),
      await t.http.post('/oauth/token').send({ grant_type: 5 }),
      await t.http.post('/oauth/token').auth(w.agent.id, w.agent.clientSecret).send({ grant_type: 'client_credentials', scope: ['a'] }),
      await t.http.post('/oauth/token').auth(w.agent.id, w.agent.clientSecret).send({ grant_type: 'client_credentials', task_id: 'bad task id!' }),
      await t.http.post('/oauth/token').set('Content-Type', 'application/json').send('[]'),
    ]) {
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: expect.any(String) });
    }
    const big = await t.http.post('/oauth/token').type('form').send({ grant_type: 'client_credentials', scope: BIG });
    expect(big.status).toBe(413);
    expect(big.body.error).toBe('invalid_request');
    const both = await t.http.post('/oauth/token').auth(w.agent.id, w.agent.clientSecret).type('form').send({ grant_type: 'client_credentials', client_secret: w.agent.clientSecret });
    expect(both.status).toBe(400);
    expect(both.body.error).toBe('invalid_request');
  });

  it('/oauth/token: a client credential parameter that is not a string (JSON) is refused, even beside valid Basic credentials', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ client_secret: 5 }, 'client_secret must be a string'],
      [{ client_secret: [w.agent.clientSecret] }, 'client_secret must be a string'],
      [{ client_secret: null }, 'client_secret must be a string'],
      [{ client_assertion: { alg: 'none' } }, 'client_assertion must be a string'],
      [{ client_id: [w.agent.id] }, 'client_id must be a string'],
    ];
    for (const [extra, description] of cases) {
      const withBasic = await t.http.post('/oauth/token').auth(w.agent.id, w.agent.clientSecret).send({ grant_type: 'client_credentials', ...extra });
      expect(withBasic.status).toBe(400);
      expect(withBasic.body).toEqual({ error: 'invalid_request', error_description: description });
      const alone = await t.http.post('/oauth/token').send({ grant_type: 'client_credentials', client_id: w.agent.id, client_secret: w.agent.clientSecret, ...extra });
      expect(alone.status).toBe(400);
      expect(alone.body).toEqual({ error: 'invalid_request', error_description: description });
    }
    // The same credentials as strings still work.
    await t.http.post('/oauth/token').send({ grant_type: 'client_credentials', client_id: w.agent.id, client_secret: w.agent.clientSecret }).expect(200);
  });

  it('an unknown route is a 404 problem, and every response carries X-Request-Id (echoed when given)', async () => {
    const res = await t.http.get('/v1/nothing-here').set('X-Request-Id', 'req-abc.123');
    expectProblem(res, 404, 'not_found');
    expect(res.headers['x-request-id']).toBe('req-abc.123');
    const generated = await t.http.get('/healthz').set('X-Request-Id', 'bad id with spaces');
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
