import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource, QueryFailedError } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootLogger } from '../src/logger.js';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer, world } from './support/fixtures.js';
import { refuseWrites } from './support/faults.js';
import { deployment, startInstance } from './support/instances.js';
import { approveWithCode, createStepUp, human } from './support/step-up.js';
import { totpCode } from './support/totp.js';

let t: TestApp;
const logs: string[] = [];
beforeAll(async () => {
  t = await startApp({ LOG_LEVEL: 'debug' }, { logs });
});
afterAll(async () => {
  await t?.close();
});

const parsed = (lines: string[]) => lines.map((l) => JSON.parse(l) as Record<string, any>);

describe('500 logs', () => {
  it('a failed query is logged with its class, message, driver code and SQL text, never its parameters (ciphertexts)', async () => {
    const { tenant, userId } = await world(t);
    const clientSecret = `cs-${randomUUID()}`;
    const con = await t.http.post('/v1/connections').set(bearer(tenant.apiKey)).send({ name: 'drive', tokenEndpoint: 'http://127.0.0.1:9/token', clientId: 'c', clientSecret }).expect(201);
    const firstRefresh = `rt-first-${randomUUID()}`;
    await t.http.put(`/v1/users/${userId}/connections/${con.body.id}`).set(bearer(tenant.apiKey)).send({ refreshToken: firstRefresh }).expect(204);
    const ds = t.app.get(DataSource);
    const [{ enc }] = await ds.query(`SELECT refresh_token_enc AS enc FROM user_connections WHERE connection_id = '${con.body.id}'`);
    const cipherPrefix = `${(enc as string).split('.').slice(0, 2).join('.')}.`; // "v1.<key id>." starts every ciphertext

    // An UPDATE carrying a refresh-token ciphertext fails; then an INSERT carrying a client-secret ciphertext.
    const from = logs.length;
    const secondRefresh = `rt-second-${randomUUID()}`;
    const secondSecret = `cs-${randomUUID()}`;
    const update = await refuseWrites(t, 'user_connections', 'UPDATE', tenant.appId);
    try {
      const res = await t.http.put(`/v1/users/${userId}/connections/${con.body.id}`).set(bearer(tenant.apiKey)).send({ refreshToken: secondRefresh });
      expect(res.status).toBe(500);
      expect(res.body.code).toBe('internal_error');
    } finally {
      await update.restore();
    }
    const insert = await refuseWrites(t, 'connections', 'INSERT', tenant.appId);
    try {
      const res = await t.http.post('/v1/connections').set(bearer(tenant.apiKey)).send({ name: 'mail', tokenEndpoint: 'http://127.0.0.1:9/token', clientId: 'c', clientSecret: secondSecret });
      expect(res.status).toBe(500);
    } finally {
      await insert.restore();
    }

    const lines = logs.slice(from);
    const errors = parsed(lines).filter((l) => l.msg === 'unhandled error');
    expect(errors).toHaveLength(2);
    expect(errors[0].err).toMatchObject({ type: 'QueryFailedError', code: update.code, message: expect.stringContaining('injected failure'), query: expect.stringMatching(/^UPDATE "user_connections" SET /) });
    expect(errors[1].err).toMatchObject({ type: 'QueryFailedError', code: insert.code, message: expect.stringContaining('injected failure'), query: expect.stringMatching(/^INSERT INTO "connections"/) });
    for (const e of errors) {
      expect(e.err).not.toHaveProperty('parameters');
      expect(e.err).not.toHaveProperty('driverError');
    }
    const text = lines.join('');
    for (const secret of [cipherPrefix, enc, firstRefresh, secondRefresh, clientSecret, secondSecret, tenant.apiKey]) {
      expect(text.includes(secret), `logs contain ${secret.slice(0, 14)}…`).toBe(false);
    }
  });

  it('a TOTP code and a bearer token sent in a request that ends in a 500 appear nowhere in the logs', async () => {
    const h = await human(t);
    const created = await createStepUp(t, h, { resource: 'log-check' }).expect(201);
    const code = await totpCode(h.totpSecret);
    const from = logs.length;
    const refuse = await refuseWrites(t, 'step_ups', 'UPDATE', h.tenant.appId);
    try {
      expect((await approveWithCode(t, h, created.body.approvalUrl, code)).status).toBe(500);
      expect((await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(h.token))).status).toBe(500);
    } finally {
      await refuse.restore();
    }
    const lines = logs.slice(from);
    expect(parsed(lines).filter((l) => l.msg === 'unhandled error')).toHaveLength(2);
    const text = lines.join('');
    for (const secret of [`"${code}"`, h.token, h.totpSecret, created.body.approvalUrl.split('/approve/')[1]]) {
      expect(text.includes(secret), `logs contain ${secret.slice(0, 14)}…`).toBe(false);
    }
  });
});

describe('log redaction', () => {
  it('hides credentials wherever a log object carries them, and keeps a database error code visible', () => {
    const lines: string[] = [];
    const log = createRootLogger({ logLevel: 'info' }, { write: (line: string) => void lines.push(line) });
    const secrets = {
      totp: '482913', totp2: '771204', basic: 'Basic dXA6c2VjcmV0', bearer: 'Bearer mpx_app_secret1', dpop: 'eyJ.dpop.proof', cookie: 'mpx_session=s3cr3t',
      clientSecret: 'mpx_sec_client1', clientSecret2: 'mpx_sec_client2', token: 'mpx-token-1', access: 'at-secret-1', refresh: 'rt-secret-1', refresh2: 'rt-secret-2',
      apiKey: 'mpx_app_key1', secret: 'whsec_1', totpSecret: 'JBSWY3DPEHPK3PXP', mfa: 'mfa-proxy-token-1', param: 'v1.kid.iv.ciphertext.tag', detail: 'Key (key_hash)=(hash-secret-1) already exists.',
    };
    log.info({ headers: { authorization: secrets.bearer, dpop: secrets.dpop, cookie: secrets.cookie } }, 'headers');
    log.info({ req: { headers: { authorization: secrets.basic }, body: { code: secrets.totp } } }, 'a request');
    log.info({ body: { code: secrets.totp2, clientSecret: secrets.clientSecret } }, 'a body');
    log.info({ client_secret: secrets.clientSecret2, token: secrets.token, access_token: secrets.access, refresh_token: secrets.refresh, apiKey: secrets.apiKey }, 'top level');
    log.info({ agent: { refreshToken: secrets.refresh2, secret: secrets.secret, totpSecret: secrets.totpSecret, mfaProxyToken: secrets.mfa } }, 'nested');
    const driverError = Object.assign(new Error('duplicate key value violates unique constraint "app_api_keys_key_hash"'), { code: '23505', detail: secrets.detail, table: 'app_api_keys' });
    log.error({ err: new QueryFailedError('INSERT INTO "app_api_keys"("id", "key_hash") VALUES ($1, $2)', ['key_1', secrets.param], driverError) }, 'unhandled error');
    log.warn({ code: 'validation_failed' }, 'a refused request');

    const text = lines.join('');
    for (const [name, value] of Object.entries(secrets)) expect(text.includes(value), `${name} is in the logs`).toBe(false);
    const [error, warn] = parsed(lines).slice(-2);
    expect(error.err).toMatchObject({ type: 'QueryFailedError', code: '23505', message: 'duplicate key value violates unique constraint "app_api_keys_key_hash"', query: 'INSERT INTO "app_api_keys"("id", "key_hash") VALUES ($1, $2)' });
    expect(warn.code).toBe('validation_failed');
  });
});

describe('log lines of a real process (buffered standard output)', () => {
  it('are written within a second on a quiet instance, and at a graceful stop', async () => {
    const instance = await startInstance(deployment(), { LOG_LEVEL: 'info' });
    try {
      const probe = (n: number) => `flush-probe-${n}-${randomBytes(4).toString('hex')}`;
      const first = probe(1);
      await instance.t.http.get('/v1/whoami').set('X-Request-Id', first).set('Authorization', 'Bearer mpx_not_a_token').expect(401);
      // Far less than the 4 KiB the buffer waits for: the periodic flush writes it.
      const until = Date.now() + 3_000;
      while (!instance.output().includes(first) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(instance.output()).toContain(first);
      const last = probe(2);
      await instance.t.http.get('/v1/whoami').set('X-Request-Id', last).set('Authorization', 'Bearer mpx_not_a_token').expect(401);
      await instance.stop('SIGTERM');
      expect(instance.output()).toContain(last);
    } finally {
      await instance.stop('SIGKILL');
    }
  });
});
