import { MfaProxyAgent, StepUpDeniedError } from '@mfa-proxy/agent';
import { MfaProxyApp } from '@mfa-proxy/app';
import { agentAuth, requireApproval } from '@mfa-proxy/app/express';
import express from 'express';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, createUser, createAgent, bearer } from '../../../test/support/fixtures.js';
import { approvalToken, approveWithPasskey, type Human } from '../../../test/support/step-up.js';
import { listen } from '../../test/http.js';
import { eventually, human, useService } from '../../test/service.js';

const s = useService();

/**
 * A real Express 5 "files" app: `GET /files` behind agentAuth, `DELETE /files/:name` behind
 * agentAuth + requireApproval, and `/hooks` receiving the service's webhooks (approval links
 * go to the scripted human from there).
 */
let server: Awaited<ReturnType<typeof listen>>;
let sdk: MfaProxyApp;
const deleted: string[] = [];
const approvalUrls: string[] = [];
const hooks: Array<{ type: string; data: Record<string, unknown> }> = [];
const files = express();
files.post('/hooks', express.raw({ type: '*/*' }), (req, res) => {
  try {
    const event = sdk.webhooks.verify(req.body as Buffer, req.headers as Record<string, string>);
    hooks.push(event);
    if (event.type === 'step_up.created') approvalUrls.push(String(event.data.approvalUrl));
    res.status(204).end();
  } catch {
    res.status(400).end();
  }
});
files.get('/files', (req, res, next) => agentAuth(sdk)(req, res, next), (req, res) => {
  res.json({ files: ['q3.pdf', 'notes.txt'], session: req.agentSession });
});
files.delete(
  '/files/:name',
  (req, res, next) => agentAuth(sdk)(req, res, next),
  (req, res, next) => requireApproval(sdk, (r) => ({ action: 'files:delete', resource: `files://${String(r.params.name)}`, details: { name: r.params.name }, reason: 'Deleting a file cannot be undone' }))(req, res, next),
  (req, res) => {
    deleted.push(String(req.params.name));
    res.json({ deleted: req.params.name, approvedBy: req.approval?.userId, stepUpId: req.approval?.stepUpId });
  },
);

let h: Human;
let challengeKey: Record<string, unknown>;
beforeAll(async () => {
  server = await listen(files);
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  challengeKey = { ...(await exportJWK(privateKey)), kid: 'files-1' };
  h = await human(s, {}, {
    approvalUrlToAgent: true,
    webhookUrl: `${server.base}/hooks`,
    resource: server.base,
    challengeJwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'files-1', alg: 'ES256', use: 'sig' }] },
  });
  const tenant = (await s.t.http.get(`/v1/apps/${h.tenant.appId}`).set(bearer(s.t.adminToken)).expect(200)).body;
  sdk = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey, resource: server.base, challengeKey, webhookSecret: h.tenant.webhookSecret });
  expect(tenant.id).toBe(h.tenant.appId);
});
afterAll(async () => server?.close());

const agentOf = (x: Human, extra: Partial<ConstructorParameters<typeof MfaProxyAgent>[0]> = {}) => new MfaProxyAgent({ issuer: s.issuer, clientId: x.agent.id, clientSecret: x.agent.clientSecret, resources: [server.base], ...extra });

describe('agentAuth (Express 5)', () => {
  it('accepts a valid agent token and sets req.agentSession in the seed’s shape', async () => {
    const agent = agentOf(h);
    const res = await agent.fetch(`${server.base}/files`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { session: Record<string, unknown> };
    expect(body.session).toEqual({
      user: { id: h.userId },
      expires: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      isAgent: true,
      agentMetadata: {
        agentId: h.agent.id,
        model: 'claude-test-1',
        parentId: h.userId,
        permissionBoundaries: ['files:*', 'research:read', 'payments:send'],
        scopes: expect.arrayContaining(['files:*', 'research:read']),
        taskId: null,
      },
    });
  });

  it('accepts a DPoP-bound token with its proof, refuses it without one', async () => {
    const agent = agentOf(h, { dpop: true });
    expect((await agent.fetch(`${server.base}/files`)).status).toBe(200);
    const token = await agent.accessToken();
    const bare = await fetch(`${server.base}/files`, { headers: { authorization: `DPoP ${token}` } });
    expect(bare.status).toBe(401);
    expect(bare.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/);
    const asBearer = await fetch(`${server.base}/files`, { headers: { authorization: `Bearer ${token}` } });
    expect(asBearer.status).toBe(401);
  });

  it('refuses a missing, forged, foreign or expired token with 401 and WWW-Authenticate', async () => {
    const none = await fetch(`${server.base}/files`);
    expect(none.status).toBe(401);
    // RFC 6750 §3.1: no error code without a credential
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm="app_[^"]+", DPoP algs="ES256 EdDSA"$/);

    const token = await agentOf(h).accessToken();
    const [head, payload] = token.split('.');
    const forged = `${head}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), scope: 'files:* admin:*' })).toString('base64url')}.${token.split('.')[2]}`;
    const bad = await fetch(`${server.base}/files`, { headers: { authorization: `Bearer ${forged}` } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(payload).toBeTruthy();

    // a valid token of another app's agent: wrong audience
    const other = await createTenant(s.t);
    const otherUser = await createUser(s.t, other);
    const otherAgent = await createAgent(s.t, other, otherUser);
    const foreign = await new MfaProxyAgent({ issuer: s.issuer, clientId: otherAgent.id, clientSecret: otherAgent.clientSecret }).accessToken();
    const res = await fetch(`${server.base}/files`, { headers: { authorization: `Bearer ${foreign}` } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(decodeProtectedHeader(foreign).typ).toBe('at+jwt');
  });

  it('refuses a suspended agent’s unexpired token', async () => {
    const x = await human(s);
    const app = new MfaProxyApp({ issuer: s.issuer, appId: x.tenant.appId, apiKey: x.tenant.apiKey });
    const token = await agentOf(x).accessToken();
    await expect(app.authenticateAgent(`Bearer ${token}`)).resolves.toMatchObject({ isAgent: true });
    await s.t.http.patch(`/v1/agents/${x.agent.id}`).set(bearer(x.tenant.apiKey)).send({ status: 'suspended' }).expect(200);
    const fresh = new MfaProxyApp({ issuer: s.issuer, appId: x.tenant.appId, apiKey: x.tenant.apiKey });
    await expect(fresh.authenticateAgent(`Bearer ${token}`)).rejects.toMatchObject({ status: 401, wwwAuthenticate: expect.stringContaining('invalid_token') });
  });
});

describe('requireApproval (Express 5)', () => {
  it('answers 403 without Accept-Txn-Challenge and 401 with a signed transaction challenge with it', async () => {
    const token = await agentOf(h).accessToken();
    const plain = await fetch(`${server.base}/files/a.txt`, { method: 'DELETE', headers: bearer(token) });
    expect(plain.status).toBe(403);
    expect(((await plain.json()) as { error: string }).error).toBe('approval_required');
    const res = await fetch(`${server.base}/files/a.txt`, { method: 'DELETE', headers: { ...bearer(token), 'accept-txn-challenge': '?1' } });
    expect(res.status).toBe(401);
    const jws = /transaction_challenge="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')?.[1];
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer error="transaction_authorization_required", transaction_challenge="/);
    expect(decodeProtectedHeader(jws!)).toMatchObject({ typ: 'txn-authz-challenge+jwt', alg: 'ES256', kid: 'files-1' });
    expect(decodeJwt(jws!)).toMatchObject({
      iss: server.base,
      aud: s.issuer,
      act: { sub: h.agent.id },
      reason: 'Deleting a file cannot be undone',
      authorization_details: [{ type: 'mfa_proxy_action', action: 'files:delete', resource: 'files://a.txt', details: { name: 'a.txt' } }],
      txn: expect.any(String),
      jti: expect.any(String),
    });
    expect(deleted).not.toContain('a.txt');
  });

  it('runs the handler once with an MFA-proxy token for exactly this operation (X-MFA-Proxy-Token); a replay or another file is refused', async () => {
    const agent = agentOf(h);
    let url: string | undefined;
    const approval = agent.stepUp({ action: 'files:delete', resource: 'files://b.txt', details: { name: 'b.txt' } }, { onPending: (p) => (url = p.approvalUrl) });
    await eventually(() => url);
    await approveWithPasskey(s.t, h, url!);
    const { mfaProxyToken } = await approval;
    const other = await fetch(`${server.base}/files/c.txt`, { method: 'DELETE', headers: { ...bearer(await agent.accessToken()), 'accept-txn-challenge': '?1', 'x-mfa-proxy-token': mfaProxyToken! } });
    expect(other.status).toBe(401); // a challenge for c.txt: b.txt's token is no approval of it (and is not spent)
    expect(await other.json()).toMatchObject({ error: 'transaction_authorization_required', reason: 'resource_mismatch' });
    const ok = await agent.fetch(`${server.base}/files/b.txt`, { method: 'DELETE', headers: { 'x-mfa-proxy-token': mfaProxyToken! } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ deleted: 'b.txt', approvedBy: h.userId });
    const replay = await fetch(`${server.base}/files/b.txt`, { method: 'DELETE', headers: { ...bearer(await agent.accessToken()), 'x-mfa-proxy-token': mfaProxyToken! } });
    expect(replay.status).toBe(403);
    expect(await replay.json()).toMatchObject({ reason: 'already_used' });
    expect(deleted.filter((d) => d === 'b.txt')).toHaveLength(1);
    expect(deleted).not.toContain('c.txt');
  });

  it('agent.fetch answers the transaction challenge: the human approves, the retry deletes once, a replay of the token is refused', async () => {
    const before = approvalUrls.length;
    const sent: string[] = [];
    const watched = new MfaProxyAgent({
      issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, resources: [server.base],
      fetch: async (input, init) => {
        const r = new Request(input, init);
        sent.push(r.headers.get('authorization') ?? '');
        return fetch(input, init);
      },
    });
    const pending = watched.fetch(`${server.base}/files/q3.pdf`, { method: 'DELETE' });
    const link = await eventually(() => approvalUrls[before], 15_000);
    expect((await approveWithPasskey(s.t, h, link)).status).toBe(200);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ deleted: 'q3.pdf', approvedBy: h.userId });
    expect(deleted.filter((d) => d === 'q3.pdf')).toHaveLength(1);
    // the retry carried the transaction token (aud = the app's resource, with txn); sent again, it is refused
    const txnToken = sent.at(-1)!.replace(/^Bearer /, '');
    expect(decodeJwt(txnToken)).toMatchObject({ aud: server.base, txn: expect.any(String) });
    const replay = await fetch(`${server.base}/files/q3.pdf`, { method: 'DELETE', headers: { authorization: `Bearer ${txnToken}`, 'accept-txn-challenge': '?1' } });
    expect(replay.status).toBe(401);
    expect(await replay.json()).toMatchObject({ reason: 'already_used' });
    expect(deleted.filter((d) => d === 'q3.pdf')).toHaveLength(1);
  });

  it('with DPoP the transaction token is bound to the agent’s key, and the retry carries its proof', async () => {
    const before = approvalUrls.length;
    const sent: string[] = [];
    const agent = new MfaProxyAgent({
      issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, resources: [server.base], dpop: true,
      fetch: async (input, init) => {
        sent.push(new Request(input, init).headers.get('authorization') ?? '');
        return fetch(input, init);
      },
    });
    const pending = agent.fetch(`${server.base}/files/d.pdf`, { method: 'DELETE' });
    await approveWithPasskey(s.t, h, await eventually(() => approvalUrls[before], 15_000));
    const res = await pending;
    expect(res.status).toBe(200);
    expect(sent.at(-1)).toMatch(/^DPoP /);
    expect(decodeJwt(sent.at(-1)!.slice(5))).toMatchObject({ aud: server.base, cnf: { jkt: expect.any(String) } });
    expect(deleted.filter((d) => d === 'd.pdf')).toHaveLength(1);
  });

  it('agent.fetch rejects with StepUpDeniedError when the human denies the challenge; the handler never runs', async () => {
    const agent = agentOf(h);
    const before = approvalUrls.length;
    const pending = agent.fetch(`${server.base}/files/keep.txt`, { method: 'DELETE' }).then(() => undefined, (e: unknown) => e);
    const link = await eventually(() => approvalUrls[before], 15_000);
    await s.t.http.post(`/v1/approvals/${approvalToken(link)}/deny`).send({}).expect(200);
    expect(await pending).toBeInstanceOf(StepUpDeniedError);
    expect(deleted).not.toContain('keep.txt');
  });
});

describe('webhooks.verify', () => {
  it('returns the event of a genuine delivery and throws for a tampered one', async () => {
    await eventually(() => hooks.find((e) => e.type === 'step_up.created'), 15_000);
    const body = JSON.stringify({ id: 'evt_x', type: 'step_up.approved', data: {} });
    expect(() => sdk.webhooks.verify(body, { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' })).toThrow();
  });
});
