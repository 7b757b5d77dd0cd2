import { MfaProxyAgent, MfaProxyWorker, StepUpCancelledError, StepUpDeniedError } from '@mfa-proxy/agent';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import { bearer, createAgent } from '../../../test/support/fixtures.js';
import { approvalToken, approveWithCode } from '../../../test/support/step-up.js';
import { worker as workerKey } from '../../../test/support/worker.js';
import { eventually, human, useService } from '../../test/service.js';

const s = useService();

/** Counts the requests the SDK sends, by method and path. */
function countingFetch() {
  const calls: string[] = [];
  const f: typeof fetch = (input, init) => {
    const req = new Request(input, init);
    calls.push(`${req.method} ${new URL(req.url).pathname}`);
    return fetch(input, init);
  };
  return { calls, fetch: f };
}

describe('MfaProxyAgent', () => {
  it('goes through a full step-up: created, approved by the human with TOTP, resolves with a token the app can verify', async () => {
    const h = await human(s);
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret });
    const pending: Array<{ id: string; bindingCode?: string; approvalUrl?: string }> = [];
    const approval = agent.stepUp(
      { action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } },
      { onPending: (p) => void pending.push(p) },
    );
    const created = await eventually(() => pending[0]);
    expect(created.id).toMatch(/^stp_/);
    expect(created.bindingCode).toBeTruthy();
    expect((await approveWithCode(s.t, h, created.approvalUrl!)).status).toBe(200);
    const result = await approval;
    expect(result.stepUpId).toBe(created.id);
    expect(result.mfaProxyToken).toBeTruthy();
    const verified = await s.t.http
      .post('/v1/mfa-proxy-tokens/verify')
      .set(bearer(h.tenant.apiKey))
      .send({ token: result.mfaProxyToken, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } })
      .expect(200);
    expect(verified.body).toMatchObject({ valid: true, stepUpId: created.id, agentId: h.agent.id, userId: h.userId });
  });

  it('rejects with StepUpDeniedError (stepUpId, reason) when the human denies', async () => {
    const h = await human(s);
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret });
    let url: string | undefined;
    const approval = agent.stepUp({ action: 'payments:send', details: { amount: 5 } }, { onPending: (p) => (url = p.approvalUrl) });
    const settled = approval.then(() => undefined, (e: unknown) => e);
    await eventually(() => url);
    await s.t.http.post(`/v1/approvals/${approvalToken(url!)}/deny`).send({ reason: 'not today' }).expect(200);
    const err = await settled;
    expect(err).toBeInstanceOf(StepUpDeniedError);
    expect((err as StepUpDeniedError).stepUpId).toMatch(/^stp_/);
    expect((err as StepUpDeniedError).reason).toContain('not today');
  });

  it('cancels the step-up when the signal aborts (StepUpCancelledError for a later waiter)', async () => {
    const h = await human(s);
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret });
    const controller = new AbortController();
    let id: string | undefined;
    const approval = agent.stepUp({ action: 'files:delete', resource: 'drive://a' }, { signal: controller.signal, onPending: (p) => (id = p.id) });
    const settled = approval.then(() => undefined, (e: unknown) => e);
    await eventually(() => id);
    controller.abort(new Error('user gave up'));
    expect(((await settled) as Error).message).toBe('user gave up');
    const status = await eventually(async () => {
      const r = await s.t.http.get(`/v1/step-ups/${id}`).set(bearer(await agent.accessToken()));
      return r.body.status === 'cancelled' ? r.body.status : undefined;
    });
    expect(status).toBe('cancelled');
    // the same Idempotency-Key names the same (now cancelled) step-up
    const again = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret });
    await again.stepUp({ action: 'files:delete', resource: 'drive://b' }, { idempotencyKey: 'k1', onPending: (p) => void again['api']('DELETE', `/v1/step-ups/${p.id}`) })
      .then(() => expect.unreachable(), (e: unknown) => expect(e).toBeInstanceOf(StepUpCancelledError));
  });

  it('caches its token and renews it 30 s before exp', async () => {
    const h = await human(s, { tokenTtl: 60 });
    const counter = countingFetch();
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: h.agent.id, clientSecret: h.agent.clientSecret, fetch: counter.fetch });
    const first = await agent.accessToken();
    expect(await agent.accessToken()).toBe(first);
    expect(await Promise.all([agent.accessToken(), agent.accessToken()])).toEqual([first, first]);
    expect(counter.calls.filter((c) => c === 'POST /oauth/token')).toHaveLength(1);
    const now = Date.now();
    const spy = vi.spyOn(Date, 'now').mockReturnValue(now + 29_000); // 31 s before exp: still cached
    try {
      expect(await agent.accessToken()).toBe(first);
      spy.mockReturnValue(now + 31_000); // 29 s before exp: renewed
      const second = await agent.accessToken();
      expect(second).not.toBe(first);
    } finally {
      spy.mockRestore();
    }
    expect(counter.calls.filter((c) => c === 'POST /oauth/token')).toHaveLength(2);
  });

  it('authenticates with private_key_jwt and binds its tokens to a DPoP key it generated; fetch sends the proof', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'k1' };
    const h = await human(s);
    const keyAgent = await createAgent(s.t, h.tenant, h.userId, { permissionBoundaries: ['files:*'], jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] } });
    expect(keyAgent.clientSecret).toBeUndefined();
    const agent = new MfaProxyAgent({ issuer: s.issuer, clientId: keyAgent.id, privateJwk, dpop: true });
    const token = await agent.accessToken();
    expect(decodeJwt(token).cnf).toMatchObject({ jkt: expect.any(String) });
    // the bound token alone is refused; through agent.fetch (with a proof) it works
    expect((await fetch(`${s.issuer}/v1/whoami`, { headers: { authorization: `DPoP ${token}` } })).status).toBe(401);
    const res = await agent.fetch(`${s.issuer}/v1/whoami`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { agentId: string }).agentId).toBe(keyAgent.id);
    // a step-up with the DPoP-bound token, approved, hands out the token to the same key
    let url: string | undefined;
    const approval = agent.stepUp({ action: 'files:delete', resource: 'drive://dpop' }, { onPending: (p) => (url = p.approvalUrl) });
    await eventually(() => url);
    await approveWithCode(s.t, h, url!);
    expect((await approval).mfaProxyToken).toBeTruthy();
  });
});

describe('MfaProxyWorker', () => {
  it('draws DPoP-bound worker tokens for its task and calls the agent API with them', async () => {
    const h = await human(s);
    const w = await workerKey();
    const task = (await s.t.http.post('/v1/tasks').set(bearer(h.token)).send({ taskId: 'nightly-1', scopes: ['research:read'], workerJwk: w.jwk }).expect(201)).body;
    const counter = countingFetch();
    const sut = new MfaProxyWorker({ issuer: s.issuer, taskId: task.id, privateJwk: await exportJWK(w.privateKey), fetch: counter.fetch });
    const token = await sut.accessToken();
    expect(decodeJwt(token)).toMatchObject({ task_id: 'nightly-1', cnf: { jkt: expect.any(String) } });
    expect(await sut.accessToken()).toBe(token);
    const res = await sut.fetch(`${s.issuer}/v1/whoami`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ agentId: h.agent.id, taskId: 'nightly-1' });
    expect(counter.calls.filter((c) => c.endsWith('/token'))).toHaveLength(1);
    // another key cannot draw the task's tokens
    const stranger = new MfaProxyWorker({ issuer: s.issuer, taskId: task.id, privateJwk: await exportJWK((await workerKey()).privateKey) });
    await expect(stranger.accessToken()).rejects.toMatchObject({ status: 401, code: 'invalid_dpop_proof' });
  });
});
