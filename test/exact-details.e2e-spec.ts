import canonicalize from 'canonicalize';
import { createHash } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';
import { bearer, createTenant } from './support/fixtures.js';
import { approvalToken, approveWithPasskey, createStepUp, expectStatus, human, type Human } from './support/step-up.js';

/**
 * API.md (v1.1) Conventions: `details` is hashed and stored exactly as parsed (no key dropped or
 * renamed), and JSON bodies are strict: no lone surrogates, no non-finite numbers, no duplicate
 * keys, at most 32 levels of `details`; C0 control characters are refused in names and identifiers
 * but kept (escaped) inside `details`.
 */
let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

const sha256b64u = (s: string) => createHash('sha256').update(s).digest('base64url');
const expectedHash = (details: unknown) => sha256b64u(canonicalize(details)!);

const invalid = (detail: string) => ({
  type: 'https://mfa-proxy.dev/problems/validation-failed',
  title: 'Invalid request',
  status: 400,
  detail,
  code: 'validation_failed',
});
const DUPLICATE_KEY = invalid('JSON object has a duplicate key');
const LONE_SURROGATE = invalid('JSON string has a lone surrogate (not valid Unicode)');
const NOT_UTF8 = invalid('request body is not valid UTF-8');
const NOT_FINITE = invalid('JSON number is not a finite IEEE-754 double');
const TOO_DEEP = invalid('JSON nests too deeply (details: at most 32 levels)');

/** Raw JSON text (or bytes) to POST /v1/step-ups, exactly as given (superagent would JSON-encode a Buffer). */
const rawStepUp = (h: Human, body: string | Buffer) =>
  t.http.post('/v1/step-ups').set(bearer(h.token)).set('Content-Type', 'application/json').serialize((b: unknown) => b as string).send(body);

const verify = (h: Human, body: Record<string, unknown>) =>
  t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send(body).expect(200);

async function count(table: 'step_ups' | 'users', column: 'agent_id' | 'app_id', value: string): Promise<number> {
  const row = await t.app.get(DataSource).createQueryBuilder().select('COUNT(*)', 'n').from(table, 'x').where(`x.${column} = :v`, { v: value }).getRawOne();
  return Number(row.n);
}
const stepUpsOf = (h: Human) => count('step_ups', 'agent_id', h.agent.id);

function expectProblem(res: { status: number; body: unknown; headers: Record<string, string> }, expected: ReturnType<typeof invalid>) {
  expect(res.status, JSON.stringify(res.body)).toBe(expected.status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toEqual(expected);
}

async function approvedToken(h: Human, body: Record<string, unknown>) {
  const created = await createStepUp(t, h, body).expect(201);
  await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
  const fetched = await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200);
  return { created, token: fetched.body.mfaProxyToken as string };
}

/** `{"a":` ... `{"a":1}` ... `}`: `levels` objects, one inside the other. */
const nestedObjects = (levels: number) => '{"a":'.repeat(levels - 1) + '{"a":1}' + '}'.repeat(levels - 1);
/** `[[...[1]...]]`: `levels` arrays, one inside the other. */
const nestedArrays = (levels: number) => '['.repeat(levels) + '1' + ']'.repeat(levels);
const stepUpWithDetails = (detailsJson: string, resource = 'drive://q3.pdf') =>
  `{"action":"files:delete","resource":${JSON.stringify(resource)},"details":${detailsJson}}`;

describe('details are hashed and stored exactly as parsed', () => {
  it('a key named like an Object.prototype member is not dropped: the approved details do not verify with an extra "valueOf", and the mismatch does not consume the token', async () => {
    const h = await human(t);
    const { token } = await approvedToken(h, { details: { amount: 1 } });
    const base = { token, action: 'files:delete', resource: 'drive://q3.pdf' };

    expect((await verify(h, { ...base, details: { amount: 1, valueOf: '9999' } })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(h, { ...base, details: { amount: 1, nested: { toString: 'x' } } })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(h, { ...base, details: { amount: 1, constructor: { a: 1 } } })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    // Not consumed by the mismatches: the exact details still verify, once.
    expect((await verify(h, { ...base, details: { amount: 1 } })).body.valid).toBe(true);
    expect((await verify(h, { ...base, details: { amount: 1 } })).body).toEqual({ valid: false, reason: 'already_used' });
  });

  it('details with constructor, prototype, toString, valueOf (nested, in arrays) are stored unchanged and hashed as RFC 8785 canonical JSON', async () => {
    const h = await human(t);
    const details = {
      constructor: { a: 1 },
      toString: 'x',
      nested: { valueOf: 2, deeper: { hasOwnProperty: true, isPrototypeOf: null } },
      list: [{ toLocaleString: 'y' }, [{ propertyIsEnumerable: 3, __defineGetter__: 'z' }], 'plain'],
      prototype: { constructor: 'a string', prototype: 0 },
    };
    const created = await createStepUp(t, h, { details }).expect(201);
    expect(created.body.detailsHash).toBe(expectedHash(details));

    const approval = await t.http.get(`/v1/approvals/${approvalToken(created.body.approvalUrl)}`).expect(200);
    expect(approval.body.details).toEqual(details);
    expect(canonicalize(approval.body.details)).toBe(canonicalize(details));
    expect(approval.body.detailsHash).toBe(expectedHash(details));
    expect((await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.detailsHash).toBe(expectedHash(details));

    await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
    const token = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken;
    const base = { token, action: 'files:delete', resource: 'drive://q3.pdf' };
    const { constructor: _dropped, ...withoutConstructor } = details;
    expect((await verify(h, { ...base, details: withoutConstructor })).body).toEqual({ valid: false, reason: 'details_mismatch' });
    expect((await verify(h, { ...base, details })).body).toMatchObject({ valid: true, detailsHash: expectedHash(details) });
  });

  it('a __proto__ key (or constructor.prototype) is refused (400 validation_failed, saying why) and creates nothing', async () => {
    const h = await human(t);
    for (const body of [stepUpWithDetails('{"__proto__":{"admin":true}}'), stepUpWithDetails('{"x":{"__proto__":1}}'), stepUpWithDetails('{"constructor":{"prototype":{"a":1}}}')]) {
      const res = await rawStepUp(h, body);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ type: 'https://mfa-proxy.dev/problems/validation-failed', title: 'Invalid request', status: 400, detail: 'JSON objects may not have a "__proto__" key, nor "constructor" with "prototype"', code: 'validation_failed' });
    }
    expect(await stepUpsOf(h)).toBe(0);
  });
});

describe('strict JSON bodies', () => {
  it('details nesting: 32 levels are accepted, 33 are 400', async () => {
    const h = await human(t);
    const accepted = await rawStepUp(h, stepUpWithDetails(nestedObjects(32), 'r-32'));
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(201);
    expect(accepted.body.detailsHash).toBe(expectedHash(JSON.parse(nestedObjects(32))));
    expectProblem(await rawStepUp(h, stepUpWithDetails(nestedObjects(33), 'r-33')), TOO_DEEP);
    expectProblem(await rawStepUp(h, stepUpWithDetails(`{"a":${nestedArrays(32)}}`, 'r-33-arrays')), TOO_DEEP);
    expect(await stepUpsOf(h)).toBe(1);
  });

  it('5,000 levels and the deepest bodies that fit in 64 KiB are a quick 400, never a 5xx; 100,000 levels exceed the body limit (413)', async () => {
    const h = await human(t);
    expectProblem(await rawStepUp(h, stepUpWithDetails(`{"a":${nestedArrays(5_000)}}`)), TOO_DEEP);
    expectProblem(await rawStepUp(h, stepUpWithDetails(nestedObjects(5_000))), TOO_DEEP);
    const balanced = stepUpWithDetails(`{"a":${nestedArrays(32_700)}}`);
    const unbalanced = stepUpWithDetails('{"a":' + '['.repeat(65_000));
    for (const body of [balanced, unbalanced]) {
      expect(Buffer.byteLength(body)).toBeLessThanOrEqual(64 * 1024);
      const started = Date.now();
      expectProblem(await rawStepUp(h, body), TOO_DEEP);
      expect(Date.now() - started).toBeLessThan(2_000);
    }
    const huge = await rawStepUp(h, stepUpWithDetails(`{"a":${nestedArrays(100_000)}}`));
    expect(huge.status).toBe(413);
    expect(huge.body.code).toBe('payload_too_large');
    expect(await stepUpsOf(h)).toBe(0);
  });

  it('numbers that are not finite doubles (1e400, -1e400) are 400', async () => {
    const h = await human(t);
    for (const n of ['1e400', '-1e400', '1E+400', '123e99999']) {
      expectProblem(await rawStepUp(h, stepUpWithDetails(`{"n":${n}}`)), NOT_FINITE);
    }
    expectProblem(await rawStepUp(h, `{"action":"files:delete","expiresIn":1e400}`), NOT_FINITE);
    expectProblem(await rawStepUp(h, stepUpWithDetails(`{"n":[1,2,${'9'.repeat(400)}]}`)), NOT_FINITE);
    expect(await stepUpsOf(h)).toBe(0);
  });

  it('lone surrogates, escaped or raw, in a value or in a key are 400', async () => {
    const h = await human(t);
    for (const details of ['{"s":"\\ud800"}', '{"s":"a\\udc00b"}', '{"s":"\\ud800\\u0041"}', '{"\\ud83d":1}', '{"x":{"ok\\udfff":1}}']) {
      expectProblem(await rawStepUp(h, stepUpWithDetails(details)), LONE_SURROGATE);
    }
    expectProblem(await rawStepUp(h, '{"action":"files:delete","bindingMessage":"\\udbff"}'), LONE_SURROGATE);
    // Raw: the UTF-8-like bytes of U+D800 (ED A0 80), which no valid UTF-8 text contains.
    const loneBytes = Buffer.from([0xed, 0xa0, 0x80]);
    const rawValue = Buffer.concat([Buffer.from('{"action":"files:delete","details":{"s":"'), loneBytes, Buffer.from('"}}')]);
    const rawKey = Buffer.concat([Buffer.from('{"action":"files:delete","details":{"'), loneBytes, Buffer.from('":1}}')]);
    for (const body of [rawValue, rawKey]) expectProblem(await rawStepUp(h, body), NOT_UTF8);
    // A proper pair, escaped or raw, is fine.
    const pair = await rawStepUp(h, stepUpWithDetails('{"s":"\\ud83d\\ude00 😀"}', 'r-pair'));
    expect(pair.status, JSON.stringify(pair.body)).toBe(201);
    expect(await stepUpsOf(h)).toBe(1);
  });

  it('duplicate keys at one level (top level, nested, spelled with escapes) are 400', async () => {
    const h = await human(t);
    for (const body of [
      '{"action":"files:delete","action":"research:read"}',
      '{"action":"files:delete","details":{"amount":1,"amount":9999}}',
      '{"action":"files:delete","details":{"x":[{"a":1,"b":2,"a":1}]}}',
      '{"action":"files:delete","details":{"a":1,"\\u0061":1}}',
      '{"action":"files:delete","\\u0064etails":{},"details":{}}',
      '{"action":"files:delete","details":{"\\/":1,"/":2}}',
    ]) {
      expectProblem(await rawStepUp(h, body), DUPLICATE_KEY);
    }
    // The same key in sibling objects is not a duplicate.
    const siblings = await rawStepUp(h, stepUpWithDetails('{"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":2}]}'));
    expect(siblings.status, JSON.stringify(siblings.body)).toBe(201);
    expect(await stepUpsOf(h)).toBe(1);
  });

  it('the verify endpoint is just as strict', async () => {
    const h = await human(t);
    const send = (body: string) => t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).set('Content-Type', 'application/json').send(body);
    expectProblem(await send('{"token":"a.b.c","action":"files:delete","details":{"amount":1,"amount":2}}'), DUPLICATE_KEY);
    expectProblem(await send('{"token":"a.b.c","action":"files:delete","details":{"amount":1e400}}'), NOT_FINITE);
    expectProblem(await send(`{"token":"a.b.c","action":"files:delete","details":${nestedObjects(33)}}`), TOO_DEEP);
  });

  it('on /oauth the same refusals are RFC 6749 invalid_request', async () => {
    for (const body of ['{"grant_type":"client_credentials","grant_type":"x"}', '{"grant_type":"client_credentials","n":1e400}', '{"grant_type":"\\ud800"}', `{"grant_type":${nestedArrays(40)}}`]) {
      const res = await t.http.post('/oauth/token').set('Content-Type', 'application/json').send(body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: expect.stringMatching(/^JSON /) });
    }
  });
});

describe('control characters', () => {
  it('NUL in action, resource or bindingMessage is 400 and creates nothing', async () => {
    const h = await human(t);
    expectProblem(await createStepUp(t, h, { action: 'files:delete\u0000' }), invalid('action must match [a-z0-9_.:-]{1,64}'));
    expectProblem(await createStepUp(t, h, { resource: 'drive://q3\u0000.pdf' }), invalid('resource must not contain control characters'));
    expectProblem(await createStepUp(t, h, { bindingMessage: 'Delete\u0000' }), invalid('bindingMessage must not contain control characters'));
    expectProblem(await createStepUp(t, h, { bindingMessage: 'tab\there' }), invalid('bindingMessage must not contain control characters'));
    expectProblem(await createStepUp(t, h, { resource: 'del\u007f' }), invalid('resource must not contain control characters'));
    expect(await stepUpsOf(h)).toBe(0);
  });

  it('NUL in a user’s displayName or externalId is 400 and creates no user', async () => {
    const tenant = await createTenant(t);
    const users = () => count('users', 'app_id', tenant.appId);
    const before = await users();
    const post = (body: Record<string, unknown>) => t.http.post('/v1/users').set(bearer(tenant.apiKey)).send(body);
    expectProblem(await post({ externalId: 'u-1', displayName: 'Ada\u0000Lovelace' }), invalid('displayName must not contain control characters'));
    expectProblem(await post({ externalId: 'u-\u0001', displayName: 'Ada' }), invalid('externalId must not contain control characters'));
    expect(await users()).toBe(before);
  });

  it('NUL and other control characters inside details are kept: 201, shown unchanged, the same hash verifies', async () => {
    const h = await human(t);
    const details = { note: 'a\u0000b', 'k\u0001': '\u001f\u007f', list: ['\n\t\r'] };
    const { created, token } = await approvedToken(h, { details });
    expect(created.body.detailsHash).toBe(expectedHash(details));
    const approval = await t.http.get(`/v1/approvals/${approvalToken(created.body.approvalUrl)}`).expect(200);
    expect(approval.body.details).toEqual(details);
    const ok = await verify(h, { token, action: 'files:delete', resource: 'drive://q3.pdf', details });
    expect(ok.body).toMatchObject({ valid: true, detailsHash: created.body.detailsHash });
  });
});
