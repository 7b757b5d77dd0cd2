import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { PUBLIC_URL, startApp, type TestApp } from './support/app.js';
import { bearer, createUser, type Tenant } from './support/fixtures.js';
import { approvalToken, createStepUp, human, type Human } from './support/step-up.js';
import { SoftAuthenticator } from './support/webauthn.js';

const logs: string[] = [];
let t: TestApp;
beforeAll(async () => {
  t = await startApp({ LOG_LEVEL: 'warn' }, { logs });
});
afterAll(async () => {
  await t?.close();
});

const WEBAUTHN_FAILED = {
  type: 'https://mfa-proxy.dev/problems/webauthn-verification-failed',
  title: 'WebAuthn verification failed',
  status: 400,
  detail: 'the passkey response could not be verified',
  code: 'webauthn_verification_failed',
};

const enrollmentLink = async (tenant: Tenant, userId: string) =>
  (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send({}).expect(201)).body.url.split('/enroll/')[1] as string;
const registrationOptions = async (link: string) => (await t.http.post(`/v1/enrollment/${link}/webauthn/options`).send({}).expect(200)).body;
const register = (link: string, response: unknown) => t.http.post(`/v1/enrollment/${link}/webauthn/verify`).send({ response });
const factorsOf = async (tenant: Tenant, userId: string) => (await t.http.get(`/v1/users/${userId}`).set(bearer(tenant.apiKey)).expect(200)).body.factors;
/** Rows stored for a credential id (base64url: safe to inline; placeholders differ between SQLite and PostgreSQL). */
const storedCredentials = async (id: string) => Number((await t.app.get(DataSource).query(`SELECT COUNT(*) AS n FROM webauthn_credentials WHERE credential_id = '${id.replace(/[^A-Za-z0-9_-]/g, '')}'`))[0].n);
/** The status as the approval lookup shows it (the agent's GET is throttled to its polling interval). */
const stepUpStatus = async (url: string) => (await t.http.get(`/v1/approvals/${approvalToken(url)}`).expect(200)).body.status;
const assertionOptions = async (url: string) => (await t.http.post(`/v1/approvals/${approvalToken(url)}/webauthn/options`).send({}).expect(200)).body;
const approve = (url: string, response: unknown) => t.http.post(`/v1/approvals/${approvalToken(url)}/webauthn/verify`).send({ response });

/** A second user of the same app, with a passkey of their own. */
async function neighbour(h: Human): Promise<{ userId: string; authenticator: SoftAuthenticator }> {
  const userId = await createUser(t, h.tenant);
  const link = await enrollmentLink(h.tenant, userId);
  const authenticator = new SoftAuthenticator(PUBLIC_URL);
  await register(link, await authenticator.register(await registrationOptions(link))).expect(201);
  return { userId, authenticator };
}

describe('approving with a passkey: the userHandle (WebAuthn §7.2 step 6)', () => {
  it('refuses an assertion by the user’s own credential that names another user of the app; the step-up stays pending', async () => {
    const h = await human(t);
    const other = await neighbour(h);
    const otherHandle = [...other.authenticator.credentials.values()][0].userHandle!;
    expect(Buffer.from(otherHandle, 'base64url').toString('utf8')).toBe(other.userId);

    const s = await createStepUp(t, h).expect(201);
    const logsBefore = logs.length;
    const res = await approve(s.body.approvalUrl, await h.authenticator.assert(await assertionOptions(s.body.approvalUrl), { userHandle: otherHandle })).expect(400);
    expect(res.body).toEqual(WEBAUTHN_FAILED);
    // Refused for the handle (the reason goes to the log only), not for anything else.
    expect(logs.slice(logsBefore).join('')).toMatch(/userHandle/);
    expect(JSON.stringify(res.body)).not.toMatch(/userHandle|usr_/);
    expect(await stepUpStatus(s.body.approvalUrl)).toBe('pending');

    // A handle that names no user at all is refused the same way.
    const bogus = Buffer.from('usr_nobody').toString('base64url');
    expect((await approve(s.body.approvalUrl, await h.authenticator.assert(await assertionOptions(s.body.approvalUrl), { userHandle: bogus })).expect(400)).body).toEqual(WEBAUTHN_FAILED);
    expect(await stepUpStatus(s.body.approvalUrl)).toBe('pending');

    // Control: the same credential with its own handle approves.
    const own = [...h.authenticator.credentials.values()][0].userHandle!;
    expect(Buffer.from(own, 'base64url').toString('utf8')).toBe(h.userId);
    await approve(s.body.approvalUrl, await h.authenticator.assert(await assertionOptions(s.body.approvalUrl), { userHandle: own })).expect(200, { status: 'approved' });
    expect(await stepUpStatus(s.body.approvalUrl)).toBe('approved');
  });

  it('accepts an assertion with no userHandle or an empty one (a non-discoverable credential names nobody)', async () => {
    const h = await human(t);
    const s = await createStepUp(t, h, { resource: 'none' }).expect(201);
    const response = await h.authenticator.assert(await assertionOptions(s.body.approvalUrl), { userHandle: null });
    expect(response.response.userHandle).toBeUndefined();
    await approve(s.body.approvalUrl, response).expect(200, { status: 'approved' });

    const e = await createStepUp(t, h, { resource: 'empty' }).expect(201);
    await approve(e.body.approvalUrl, await h.authenticator.assert(await assertionOptions(e.body.approvalUrl), { userHandle: '' })).expect(200, { status: 'approved' });
  });
});

describe('registering a passkey: the credential id length (WebAuthn L3 §7.1)', () => {
  it('refuses a credential id of 1024 bytes and stores nothing', async () => {
    const h = await human(t);
    const link = await enrollmentLink(h.tenant, h.userId);
    const factorsBefore = await factorsOf(h.tenant, h.userId);
    expect(factorsBefore).toHaveLength(2);
    const response = await new SoftAuthenticator(PUBLIC_URL).register(await registrationOptions(link), { credentialIdLength: 1024 });
    expect(Buffer.from(response.rawId, 'base64url')).toHaveLength(1024);
    expect((await register(link, response).expect(400)).body).toEqual(WEBAUTHN_FAILED);
    expect(await factorsOf(h.tenant, h.userId)).toEqual(factorsBefore);
    expect(await storedCredentials(response.rawId)).toBe(0);
  });

  it('refuses a response that names a short id while its authenticator data carries a 1024-byte one', async () => {
    const h = await human(t);
    const link = await enrollmentLink(h.tenant, h.userId);
    const factorsBefore = await factorsOf(h.tenant, h.userId);
    const response = await new SoftAuthenticator(PUBLIC_URL).register(await registrationOptions(link), { credentialIdLength: 1024 });
    const short = Buffer.from(response.rawId, 'base64url').subarray(0, 16).toString('base64url');
    expect((await register(link, { ...response, id: short, rawId: short }).expect(400)).body).toEqual(WEBAUTHN_FAILED);
    expect(await factorsOf(h.tenant, h.userId)).toEqual(factorsBefore);
    expect(await storedCredentials(response.rawId)).toBe(0);
    expect(await storedCredentials(short)).toBe(0);
  });

  it('accepts a credential id of 1023 bytes, and it approves', async () => {
    const h = await human(t);
    const link = await enrollmentLink(h.tenant, h.userId);
    const authenticator = new SoftAuthenticator(PUBLIC_URL);
    const response = await authenticator.register(await registrationOptions(link), { credentialIdLength: 1023 });
    const { factorId } = (await register(link, response).expect(201)).body;
    expect((await factorsOf(h.tenant, h.userId)).map((f: { id: string }) => f.id)).toContain(factorId);
    expect(await storedCredentials(response.rawId)).toBe(1);

    const s = await createStepUp(t, h).expect(201);
    await approve(s.body.approvalUrl, await authenticator.assert(await assertionOptions(s.body.approvalUrl), { credential: response.id })).expect(200, { status: 'approved' });
  });
});

/** The text content of the element with this id (the page puts each on one element, no nesting). */
const element = (html: string, id: string) => html.match(new RegExp(`<[a-z0-9]+ [^>]*id="${id}"[^>]*>([\\s\\S]*?)</`))?.[1];

describe('the approval page shows invisible characters', () => {
  it('renders tag characters, word joiner, soft hyphen and bidi override written by the agent as [U+XXXX]', async () => {
    const h = await human(t);
    const hidden = 'a\u{E0041}b\u2060c\u00ADd\u202Ee';
    const s = await createStepUp(t, h, { bindingMessage: `Delete ${hidden}`, details: { note: hidden } }).expect(201);
    const page = await t.http.get(`/approve/${approvalToken(s.body.approvalUrl)}`).expect(200);
    const visible = 'a[U+E0041]b[U+2060]c[U+00AD]d[U+202E]e';
    expect(element(page.text, 'binding-message')).toBe(`Delete ${visible}`);
    expect(element(page.text, 'details')).toBe(`{\n  &quot;note&quot;: &quot;${visible}&quot;\n}`);
    for (const c of ['\u{E0041}', '\u2060', '\u00AD', '\u202E']) expect(page.text).not.toContain(c);
  });
});

describe('the approval page of a sudo grant', () => {
  it('leads with the scopes and the duration; the agent’s action comes later as its stated purpose', async () => {
    const h = await human(t);
    const action = 'files:tidy-up';
    const s = await createStepUp(t, h, { action, resource: 'drive://old', grant: { type: 'sudo', scopes: ['files:delete', 'files:share'], duration: 600 } }).expect(201);
    const html = (await t.http.get(`/approve/${approvalToken(s.body.approvalUrl)}`).expect(200)).text;

    const title = html.match(/<title>([\s\S]*?)<\/title>/)![1];
    expect(title).toMatch(/^Grant temporary access: files:delete files:share for 10 min\? — /);
    expect(title).not.toContain(action);

    const h1 = html.match(/<h1[^>]*>([\s\S]*?)<\/h1>/)![1];
    expect(h1).toContain('10 min');
    expect(h1).not.toContain(action);

    const firstSection = html.match(/<section[^>]*>([\s\S]*?)<\/section>/)![1];
    expect(firstSection).toContain('files:delete');
    expect(firstSection).toContain('files:share');
    expect(firstSection).toContain('10 min');
    expect(firstSection).not.toContain(action);

    // Nothing before the grant names the action; the action is shown after it, as the agent's purpose.
    expect(html.indexOf(action)).toBeGreaterThan(html.indexOf(firstSection) + firstSection.length);
    expect(element(html, 'action')).toBe(action);
    expect(html).toMatch(/stated purpose/i);
  });

  it('a token grant still leads with the action', async () => {
    const h = await human(t);
    const s = await createStepUp(t, h, { action: 'files:delete' }).expect(201);
    const html = (await t.http.get(`/approve/${approvalToken(s.body.approvalUrl)}`).expect(200)).text;
    expect(html.match(/<title>([\s\S]*?)<\/title>/)![1]).toMatch(/^Approve files:delete\? — /);
    expect(element(html, 'action')).toBe('files:delete');
    expect(html).not.toMatch(/Grant temporary access/);
  });
});
