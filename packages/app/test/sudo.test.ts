import { MfaProxyAgent, StepUpDeniedError } from '@mfa-proxy/agent';
import { MfaProxyApp } from '@mfa-proxy/app';
import { agentAuth, requireSudo } from '@mfa-proxy/app/express';
import express from 'express';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CSRF, signInWithPasskey } from '../../../test/support/me.js';
import { approvalToken, approveWithCode, approveWithPasskey, type Human } from '../../../test/support/step-up.js';
import { listen } from '../../test/http.js';
import { eventually, human, useService } from '../../test/service.js';

const s = useService();

/**
 * A real Express 5 app: `POST /files/purge` needs a sudo grant of `files:purge` approved at most
 * 300 s ago (RFC 9470); `POST /files/rotate` the same at most 60 s ago. Every request to them and
 * every answer is recorded, so the tests count the agent's tries.
 */
let server: Awaited<ReturnType<typeof listen>>;
let sdk: MfaProxyApp;
const tries: Array<{ path: string; authorization: string }> = [];
const purged: Array<{ stepUpId: string; authTime: string; agentId: string }> = [];
const api = express();
api.use((req, _res, next) => {
  tries.push({ path: req.path, authorization: req.get('authorization') ?? '' });
  next();
});
api.post('/files/purge', (req, res, next) => agentAuth(sdk)(req, res, next), (req, res, next) => requireSudo(sdk, { scopes: ['files:purge'], maxAge: 300, reason: 'Purging deletes every file' })(req, res, next), (req, res) => {
  purged.push({ stepUpId: req.sudo!.stepUpId, authTime: req.sudo!.authTime, agentId: req.agentSession!.agentMetadata.agentId });
  res.json({ purged: true, stepUpId: req.sudo!.stepUpId });
});
api.post('/files/rotate', (req, res, next) => requireSudo(sdk, { scopes: ['files:purge'], maxAge: 60 })(req, res, next), (_req, res) => void res.json({ rotated: true }));

let h: Human;
beforeAll(async () => {
  server = await listen(api);
  h = await human(s);
  sdk = new MfaProxyApp({ issuer: s.issuer, appId: h.tenant.appId, apiKey: h.tenant.apiKey });
});
afterAll(async () => server?.close());

/** The agent, with the approval links of its step-ups (the app hands them to the agent: approvalUrlToAgent). */
function agentOf(x: Human) {
  const links: string[] = [];
  const answers: Array<{ status: number; wwwAuthenticate: string | null }> = [];
  const agent = new MfaProxyAgent({
    issuer: s.issuer,
    clientId: x.agent.id,
    clientSecret: x.agent.clientSecret,
    resources: [server.base],
    onPending: (p) => void links.push(p.approvalUrl!),
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      // a logging wrapper that keeps a copy of each answer (res.clone() tees the body; the copy is never read):
      // the SDK must not wait for the body it drops to be cancelled
      if (new Request(input, init).url.startsWith(server.base)) {
        const copy = res.clone();
        answers.push({ status: copy.status, wwwAuthenticate: copy.headers.get('www-authenticate') });
      }
      return res;
    },
  });
  return { agent, links, answers };
}

const purgeTries = () => tries.filter((t) => t.path === '/files/purge');

describe('requireSudo (RFC 9470) and MfaProxyAgent.fetch', () => {
  it('answers 401 insufficient_user_authentication (acr_values="mfa", max_age); agent.fetch gets a sudo grant approved by TOTP and retries once', async () => {
    const { agent, links, answers } = agentOf(h);
    const before = purgeTries().length;
    const done = agent.fetch(`${server.base}/files/purge`, { method: 'POST' });
    const link = await eventually(() => links[0], 15_000);
    // the human sees a sudo grant of files:purge on the real approval page and approves with a TOTP code
    const page = await s.t.http.get(`/v1/approvals/${approvalToken(link)}`).expect(200);
    expect(page.body).toMatchObject({ action: 'files:purge', grant: { type: 'sudo', scopes: ['files:purge'], duration: 300 } });
    expect((await approveWithCode(s.t, h, link)).status).toBe(200);
    const res = await done;
    expect(res.status).toBe(200);

    // exactly two tries: the plain token (challenged), then the sudo token
    const mine = purgeTries().slice(before);
    expect(mine).toHaveLength(2);
    expect(answers.map((a) => a.status)).toEqual([401, 200]);
    expect(answers[0]!.wwwAuthenticate).toBe('Bearer error="insufficient_user_authentication", error_description="Purging deletes every file", acr_values="mfa", max_age=300, scope="files:purge"');
    expect(decodeJwt(mine[0]!.authorization.slice(7)).acr).toBeUndefined();
    const sudo = decodeJwt(mine[1]!.authorization.slice(7));
    expect(sudo).toMatchObject({ acr: 'mfa', auth_time: expect.any(Number), step_up_id: expect.stringMatching(/^stp_/) });
    expect(String(sudo.scope).split(' ')).toContain('files:purge');
    const body = (await res.json()) as { stepUpId: string };
    expect(body.stepUpId).toBe(sudo.step_up_id);
    expect(purged.at(-1)).toEqual({ stepUpId: sudo.step_up_id, authTime: new Date(Number(sudo.auth_time) * 1000).toISOString(), agentId: h.agent.id });
  });

  it('a denial surfaces as StepUpDeniedError; no second try, the handler never runs', async () => {
    const x = h;
    const { agent, links, answers } = agentOf(x);
    const before = purgeTries().length;
    const ran = purged.length;
    const settled = agent.fetch(`${server.base}/files/purge`, { method: 'POST' }).then(() => undefined, (e: unknown) => e);
    const link = await eventually(() => links[0], 15_000);
    await s.t.http.post(`/v1/approvals/${approvalToken(link)}/deny`).send({ reason: 'no purge today' }).expect(200);
    const err = await settled;
    expect(err).toBeInstanceOf(StepUpDeniedError);
    expect((err as StepUpDeniedError).reason).toContain('no purge today');
    expect(purgeTries().length - before).toBe(1);
    expect(answers.map((a) => a.status)).toEqual([401]);
    expect(purged.length).toBe(ran);
  });

  it('refuses a sudo token approved longer ago than max_age, and one whose grant the human revoked', async () => {
    const x = h;
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: x.agent.id, clientSecret: x.agent.clientSecret });
    let link: string | undefined;
    const approval = agent.stepUp({ action: 'files:purge', grant: { type: 'sudo', scopes: ['files:purge'], duration: 300 } }, { onPending: (p) => (link = p.approvalUrl) });
    await approveWithPasskey(s.t, x, await eventually(() => link));
    const { sudoToken, stepUpId } = await approval;
    const post = (path: string) => fetch(`${server.base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${sudoToken}` } });
    expect((await post('/files/rotate')).status).toBe(200);

    // 120 s after the approval the token is still valid (exp +300 s), but older than /files/rotate's max_age=60
    const now = Date.now();
    const spy = vi.spyOn(Date, 'now').mockReturnValue(now + 120_000);
    try {
      const old = await post('/files/rotate');
      expect(old.status).toBe(401);
      expect(old.headers.get('www-authenticate')).toContain('max_age=60');
      expect(await old.json()).toMatchObject({ error: 'insufficient_user_authentication', reason: 'too_old' });
      expect((await post('/files/purge')).status).toBe(200); // max_age=300 still holds
    } finally {
      spy.mockRestore();
    }

    // the human revokes the grant on the dashboard: the app refuses it at once, though its signature and exp still hold
    const cookie = await signInWithPasskey(s.t, x);
    await s.t.http.delete(`/v1/me/grants/${stepUpId}`).set('Cookie', cookie).set(CSRF).expect(204);
    const revoked = await post('/files/purge');
    expect(revoked.status).toBe(401);
    expect(await revoked.json()).toMatchObject({ error: 'insufficient_user_authentication', reason: 'revoked' });
  });

  it('a plain agent token (no acr) is challenged; so is a sudo grant of another scope', async () => {
    const x = h;
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: x.agent.id, clientSecret: x.agent.clientSecret });
    const plain = await fetch(`${server.base}/files/purge`, { method: 'POST', headers: { authorization: `Bearer ${await agent.accessToken()}` } });
    expect(plain.status).toBe(401);
    expect(await plain.json()).toMatchObject({ reason: 'no_sudo_grant' });
    let link: string | undefined;
    const approval = agent.stepUp({ action: 'payments:send', grant: { type: 'sudo', scopes: ['payments:send'] } }, { onPending: (p) => (link = p.approvalUrl) });
    await approveWithPasskey(s.t, x, await eventually(() => link));
    const other = await fetch(`${server.base}/files/purge`, { method: 'POST', headers: { authorization: `Bearer ${(await approval).sudoToken}` } });
    expect(other.status).toBe(401);
    expect(await other.json()).toMatchObject({ reason: 'scope_not_granted' });
  });
});
