import { MfaProxyAgent, MfaProxyError } from '@mfa-proxy/agent';
import { MfaProxyApp } from '@mfa-proxy/app';
import { agentAuth, requireApproval } from '@mfa-proxy/app/express';
import express from 'express';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { request as httpRequest } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createAgent, createUser } from '../../../test/support/fixtures.js';
import { approveWithPasskey, type Human } from '../../../test/support/step-up.js';
import { listen } from '../../test/http.js';
import { eventually, human, useService } from '../../test/service.js';

const s = useService();

/**
 * The security review's attacks (issue 14 fixes) against a real Express app and the real service:
 * unverified transaction tokens, another agent's approval, a Host-forged DPoP `htu`, a relay
 * collecting the agent's token, revocation windows and replayed webhooks.
 */
let server: Awaited<ReturnType<typeof listen>>;
let relay: Awaited<ReturnType<typeof listen>>;
let sdk: MfaProxyApp;
let h: Human;
const deleted: string[] = [];
const approvalUrls: string[] = [];
const spec = (name: string) => ({ action: 'files:delete', resource: `files://${name}`, details: { name }, reason: 'Deleting a file cannot be undone' });

const files = express();
files.post('/hooks', express.raw({ type: '*/*' }), (req, res) => {
  try {
    const event = sdk.webhooks.verify(req.body as Buffer, req.headers as Record<string, string>);
    if (event.type === 'step_up.created') approvalUrls.push(String(event.data.approvalUrl));
    res.status(204).end();
  } catch {
    res.status(400).end();
  }
});
files.get('/files', (req, res, next) => agentAuth(sdk)(req, res, next), (req, res) => void res.json({ files: ['q3.pdf'], session: req.agentSession ?? null }));
files.delete(
  '/files/:name',
  (req, res, next) => agentAuth(sdk)(req, res, next),
  (req, res, next) => requireApproval(sdk, (r) => spec(String(r.params.name)))(req, res, next),
  (req, res) => {
    deleted.push(String(req.params.name));
    res.json({ deleted: req.params.name, agentId: req.approval?.agentId });
  },
);
// requireApproval alone (it needs no agentAuth)
files.delete(
  '/bare/:name',
  (req, res, next) => requireApproval(sdk, (r) => spec(String(r.params.name)))(req, res, next),
  (req, res) => {
    deleted.push(String(req.params.name));
    res.json({ deleted: req.params.name, agentId: req.approval?.agentId });
  },
);

/** Another origin that relays to the app, or answers with a challenge of its own choosing. */
const relayed: Array<string | null> = [];
let relayChallenge = '';
const relayApp = express();
relayApp.use((req, res) => {
  relayed.push(req.get('authorization') ?? null);
  res.status(401).set('WWW-Authenticate', relayChallenge).json({ error: 'relay' });
});

beforeAll(async () => {
  server = await listen(files);
  relay = await listen(relayApp);
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  h = await human(s, {}, {
    approvalUrlToAgent: true,
    webhookUrl: `${server.base}/hooks`,
    resource: server.base,
    challengeJwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'sec-1', alg: 'ES256', use: 'sig' }] },
  });
  sdk = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey, resource: server.base, challengeKey: { ...(await exportJWK(privateKey)), kid: 'sec-1' }, webhookSecret: h.tenant.webhookSecret });
});
afterAll(async () => {
  await server?.close();
  await relay?.close();
});

/** The agent's own fetch, recording every request it sends. */
function recording() {
  const sent: Request[] = [];
  return { sent, fetch: (input: RequestInfo | URL, init?: RequestInit) => (sent.push(new Request(input, init)), fetch(input, init)) };
}
const agentOf = (x: Human, extra: Partial<ConstructorParameters<typeof MfaProxyAgent>[0]> = {}) =>
  new MfaProxyAgent({ issuer: s.issuer, clientId: x.agent.id, clientSecret: x.agent.clientSecret, resources: [server.base], ...extra });
const unsigned = (claims: Record<string, unknown>) => `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;

describe('agentAuth and transaction tokens (finding 1) and challenges without a credential (finding 7)', () => {
  it('an unverified (alg:none) transaction token is 401 at agentAuth; a genuine one authenticates only its agent (no scopes); a spent one gets no challenge naming its agent', async () => {
    const forged = unsigned({ txn: 'x', sub: h.userId, client_id: h.agent.id, act: { sub: h.agent.id }, aud: server.base, iss: s.issuer, exp: Math.floor(Date.now() / 1000) + 60 });
    const list = await fetch(`${server.base}/files`, { headers: { authorization: `Bearer ${forged}` } });
    expect(list.status).toBe(401);
    expect(list.headers.get('www-authenticate')).toContain('error="invalid_token"');
    const del = await fetch(`${server.base}/files/f1.txt`, { method: 'DELETE', headers: { authorization: `Bearer ${forged}`, 'accept-txn-challenge': '?1' } });
    expect(del.status).toBe(401);
    expect(del.headers.get('www-authenticate')).not.toContain('transaction_challenge');
    const bare = await fetch(`${server.base}/bare/f1.txt`, { method: 'DELETE', headers: { authorization: `Bearer ${forged}`, 'accept-txn-challenge': '?1' } });
    expect(bare.status).toBe(401);
    expect(bare.headers.get('www-authenticate')).not.toContain('transaction_challenge');

    // a genuine transaction token: before the retry spends it, it is sent to GET /files
    let onList: { status: number; body: { session: { agentMetadata: { agentId: string; scopes: string[] } } | null } } | undefined;
    let txnAuthorization = '';
    const agent = agentOf(h, {
      fetch: async (input, init) => {
        const r = new Request(input, init);
        const auth = r.headers.get('authorization') ?? '';
        if (r.method === 'DELETE' && auth.startsWith('Bearer ') && decodeJwt(auth.slice(7)).txn !== undefined) {
          txnAuthorization = auth;
          const l = await fetch(`${server.base}/files`, { headers: { authorization: auth } });
          onList = { status: l.status, body: (await l.json()) as never };
        }
        return fetch(input, init);
      },
    });
    const before = approvalUrls.length;
    const pending = agent.fetch(`${server.base}/files/f2.txt`, { method: 'DELETE' });
    expect((await approveWithPasskey(s.t, h, await eventually(() => approvalUrls[before], 15_000))).status).toBe(200);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(deleted.filter((d) => d === 'f2.txt')).toHaveLength(1);
    expect(onList).toEqual({ status: 200, body: { files: ['q3.pdf'], session: expect.objectContaining({ agentMetadata: expect.objectContaining({ agentId: h.agent.id, scopes: [] }) }) } });

    // finding 7: the spent token authenticates no one: a plain 401, no challenge naming its agent
    const replay = await fetch(`${server.base}/bare/f2.txt`, { method: 'DELETE', headers: { authorization: txnAuthorization, 'accept-txn-challenge': '?1' } });
    expect(replay.status).toBe(401);
    expect(replay.headers.get('www-authenticate')).toMatch(/^Bearer realm="app_[^"]+", error="invalid_token"/);
    expect(await replay.json()).toMatchObject({ error: 'invalid_token', reason: 'already_used' });
  });
});

describe('X-MFA-Proxy-Token is bound to the calling agent (finding 2)', () => {
  it('agent 2 presenting agent 1’s token is refused and does not spend it; without an agent credential it is 401; agent 1 then uses it', async () => {
    const user2 = await createUser(s.t, h.tenant);
    const agent2 = await createAgent(s.t, h.tenant, user2);
    const a1 = agentOf(h);
    let url: string | undefined;
    const approval = a1.stepUp({ action: 'files:delete', resource: 'files://m.txt', details: { name: 'm.txt' } }, { onPending: (p) => (url = p.approvalUrl) });
    await approveWithPasskey(s.t, h, await eventually(() => url));
    const { mfaProxyToken } = await approval;
    const t2 = await new MfaProxyAgent({ issuer: s.issuer, clientId: agent2.id, clientSecret: agent2.clientSecret }).accessToken();
    for (const path of ['/files/m.txt', '/bare/m.txt']) {
      const other = await fetch(`${server.base}${path}`, { method: 'DELETE', headers: { ...bearer(t2), 'x-mfa-proxy-token': mfaProxyToken! } });
      expect(other.status).toBe(403);
      expect(await other.json()).toMatchObject({ reason: 'agent_mismatch' });
    }
    const anonymous = await fetch(`${server.base}/bare/m.txt`, { method: 'DELETE', headers: { 'x-mfa-proxy-token': mfaProxyToken! } });
    expect(anonymous.status).toBe(401);
    expect(deleted).not.toContain('m.txt');
    const ok = await fetch(`${server.base}/bare/m.txt`, { method: 'DELETE', headers: { ...bearer(await a1.accessToken()), 'x-mfa-proxy-token': mfaProxyToken! } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ deleted: 'm.txt', agentId: h.agent.id });
  });
});

describe('DPoP htu from the configured origin, not Host (finding 3)', () => {
  it('a proof made for http://evil.example/files, replayed to the app with Host: evil.example, is 401', async () => {
    let captured: Headers | undefined;
    const agent = agentOf(h, {
      dpop: true,
      resources: [server.base, 'http://evil.example'],
      fetch: async (input, init) => {
        const r = new Request(input, init);
        if (r.url.startsWith('http://evil.example/')) {
          captured = r.headers;
          return new Response('{}', { status: 200 });
        }
        return fetch(input, init);
      },
    });
    await agent.fetch('http://evil.example/files');
    expect(captured?.get('authorization')).toMatch(/^DPoP /);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${server.base}/files`, { headers: { host: 'evil.example', authorization: captured!.get('authorization')!, dpop: captured!.get('dpop')! } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject).end();
    });
    expect(status).toBe(401);
    // the agent's own request to the app's origin still passes
    expect((await agent.fetch(`${server.base}/files`)).status).toBe(200);
  });
});

describe('the agent SDK sends its token only to its resources (finding 4)', () => {
  it('a relay on another origin gets no token and its relayed challenge is refused; a challenge issued by another origin is refused too; no step-up is created', async () => {
    const { challenge } = { challenge: await sdk.transactionChallenge({ ...spec('r.txt'), agentId: h.agent.id }) };
    relayChallenge = challenge.wwwAuthenticate;
    const rec = recording();
    const agent = agentOf(h, { fetch: rec.fetch });
    const err = await agent.fetch(`${relay.base}/files/r.txt`, { method: 'DELETE' }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(MfaProxyError);
    expect((err as MfaProxyError).code).toBe('untrusted_challenge');
    expect(relayed.at(-1)).toBeNull();

    relayChallenge = 'Bearer error="insufficient_user_authentication", acr_values="mfa", max_age=300, scope="files:purge"';
    const sudo = await agent.fetch(`${relay.base}/files/purge`, { method: 'POST' }).then(() => undefined, (e: unknown) => e);
    expect((sudo as MfaProxyError).code).toBe('untrusted_challenge');
    expect(relayed.at(-1)).toBeNull();

    // an allowed origin answering with another app's challenge (iss = the files app): refused
    relayChallenge = challenge.wwwAuthenticate;
    const trusting = agentOf(h, { fetch: rec.fetch, resources: [server.base, relay.base] });
    const iss = await trusting.fetch(`${relay.base}/files/r.txt`, { method: 'DELETE' }).then(() => undefined, (e: unknown) => e);
    expect((iss as MfaProxyError).code).toBe('untrusted_challenge');
    expect(relayed.at(-1)).toMatch(/^Bearer /);

    // Without `resources` (SDK.md's default: every origin trusted) a relayed challenge is still refused: its iss is not the relay.
    const defaults = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, fetch: rec.fetch });
    const relayedByDefault = await defaults.fetch(`${relay.base}/files/r.txt`, { method: 'DELETE' }).then(() => undefined, (e: unknown) => e);
    expect((relayedByDefault as MfaProxyError).code).toBe('untrusted_challenge');

    expect(rec.sent.map((r) => new URL(r.url).pathname).filter((p) => p.startsWith('/oauth/txn-authorization') || p.startsWith('/v1/step-ups'))).toEqual([]);
    expect(deleted).not.toContain('r.txt');
  });
});

describe('revocation without a window (finding 5)', () => {
  it('with introspect: true a revoked token and a suspended agent are 401 at once on the same MfaProxyApp', async () => {
    const x = await human(s);
    const app = new MfaProxyApp({ issuer: s.issuer, appId: x.tenant.appId, apiKey: x.tenant.apiKey, introspect: true });
    const agent = agentOf(x);
    const token = await agent.accessToken();
    await expect(app.authenticateAgent(`Bearer ${token}`)).resolves.toMatchObject({ isAgent: true });
    await s.t.http.post('/oauth/revoke').auth(x.agent.id, x.agent.clientSecret).type('form').send({ token }).expect(200);
    await expect(app.authenticateAgent(`Bearer ${token}`)).rejects.toMatchObject({ status: 401, message: 'the token is not active' });

    agent.clearToken();
    const fresh = await agent.accessToken();
    await expect(app.authenticateAgent(`Bearer ${fresh}`)).resolves.toMatchObject({ isAgent: true });
    await s.t.http.patch(`/v1/agents/${x.agent.id}`).set(bearer(x.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    await expect(app.authenticateAgent(`Bearer ${fresh}`)).rejects.toMatchObject({ status: 401 });
  });

  it('an agent.revoked webhook seen by webhooks.verify drops the agent’s cached status', async () => {
    const x = await human(s);
    const app = new MfaProxyApp({ issuer: s.issuer, appId: x.tenant.appId, apiKey: x.tenant.apiKey, webhookSecret: x.tenant.webhookSecret });
    const token = await agentOf(x).accessToken();
    await expect(app.authenticateAgent(`Bearer ${token}`)).resolves.toMatchObject({ isAgent: true });
    await s.t.http.patch(`/v1/agents/${x.agent.id}`).set(bearer(x.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    const body = JSON.stringify({ id: 'evt_1', type: 'agent.revoked', data: { agentId: x.agent.id, userId: x.userId } });
    const at = new Date();
    app.webhooks.verify(body, { 'webhook-id': 'evt_1', 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(x.tenant.webhookSecret).sign('evt_1', at, body) });
    await expect(app.authenticateAgent(`Bearer ${token}`)).rejects.toMatchObject({ status: 401, message: 'the agent is not active' });
  });
});

describe('webhook replay (finding 6)', () => {
  it('with rejectReplayedWebhooks a second delivery of the same webhook-id throws; without it both verify', () => {
    const secret = h.tenant.webhookSecret;
    const body = JSON.stringify({ id: 'evt_r', type: 'step_up.approved', data: {} });
    const at = new Date();
    const headers = { 'webhook-id': 'evt_r', 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign('evt_r', at, body) };
    const strict = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey, webhookSecret: secret, rejectReplayedWebhooks: true });
    expect(strict.webhooks.verify(body, headers)).toMatchObject({ type: 'step_up.approved' });
    expect(() => strict.webhooks.verify(body, headers)).toThrow(/delivered before/);
    const lax = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey, webhookSecret: secret });
    lax.webhooks.verify(body, headers);
    expect(lax.webhooks.verify(body, headers)).toMatchObject({ type: 'step_up.approved' });
  });
});
