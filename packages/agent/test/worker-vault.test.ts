import { MfaProxyWorker } from '@mfa-proxy/agent';
import { randomUUID } from 'node:crypto';
import { exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer } from '../../../test/support/fixtures.js';
import type { Human } from '../../../test/support/step-up.js';
import { upstreamProvider } from '../../../test/support/upstream.js';
import { worker as workerKey, type Worker } from '../../../test/support/worker.js';
import { human, useService } from '../../test/service.js';

const s = useService();

/**
 * The real vault flow: the app registers a connection to an upstream OAuth provider (the fake one
 * of test/support/upstream.ts, rotating refresh tokens) and deposits the user's refresh token; the
 * agent starts a task whose scopes include `connection:drive`; the task's worker draws the
 * user's upstream access token with MfaProxyWorker.connectionToken.
 */
describe('MfaProxyWorker.connectionToken', () => {
  const original = `rt-original-${randomUUID()}`;
  let upstream: Awaited<ReturnType<typeof upstreamProvider>>;
  let h: Human;
  let w: Worker;
  let drive: string;
  let mail: string;
  let task: { id: string };

  beforeAll(async () => {
    upstream = await upstreamProvider(original);
    h = await human(s, { permissionBoundaries: ['research:read', 'connection:drive', 'connection:mail'] });
    const connection = async (name: string) =>
      (await s.t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ name, tokenEndpoint: upstream.url, clientId: upstream.clientId, clientSecret: upstream.clientSecret, scopes: ['drive.read'] }).expect(201)).body.id as string;
    drive = await connection('drive');
    mail = await connection('mail');
    await s.t.http.put(`/v1/users/${h.userId}/connections/${drive}`).set(bearer(h.tenant.apiKey)).send({ refreshToken: original }).expect(204);
    await s.t.http.put(`/v1/users/${h.userId}/connections/${mail}`).set(bearer(h.tenant.apiKey)).send({ refreshToken: `rt-mail-${randomUUID()}` }).expect(204);
    w = await workerKey();
    // the task reaches the drive connection only (connection:drive), not mail
    task = (await s.t.http.post('/v1/tasks').set(bearer(h.token)).send({ taskId: 'sync-drive', scopes: ['research:read', 'connection:drive'], workerJwk: w.jwk }).expect(201)).body;
  });
  afterAll(async () => upstream?.close());

  it('draws the user’s upstream access token with the worker’s DPoP key; the vault refreshes upstream once and caches it', async () => {
    const sut = new MfaProxyWorker({ issuer: s.issuer, taskId: task.id, privateJwk: await exportJWK(w.privateKey) });
    const first = await sut.connectionToken(drive);
    expect(first).toEqual({ accessToken: upstream.state.issued[0], expiresIn: expect.any(Number), scope: 'drive.read' });
    expect(first.expiresIn).toBeGreaterThan(0);
    // the vault presented the deposited refresh token, once; the worker never saw it
    expect(upstream.state.seen).toEqual([original]);
    expect(JSON.stringify(first)).not.toContain(original);
    const again = await sut.connectionToken(drive);
    expect(again.accessToken).toBe(first.accessToken);
    expect(again.expiresIn).toBeLessThanOrEqual(first.expiresIn);
    expect(upstream.state.calls).toBe(1);
  });

  it('is refused for a connection (deposited too) outside the task’s scopes, and to a key that is not the task’s worker', async () => {
    const sut = new MfaProxyWorker({ issuer: s.issuer, taskId: task.id, privateJwk: await exportJWK(w.privateKey) });
    await expect(sut.connectionToken(mail)).rejects.toMatchObject({ status: 403, code: 'action_not_permitted' });
    const stranger = new MfaProxyWorker({ issuer: s.issuer, taskId: task.id, privateJwk: await exportJWK((await workerKey()).privateKey) });
    await expect(stranger.connectionToken(drive)).rejects.toMatchObject({ status: 401, code: 'invalid_dpop_proof' });
    expect(upstream.state.calls).toBe(1);
  });
});
