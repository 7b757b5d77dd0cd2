import { expect } from 'vitest';
import type { Response } from 'supertest';
import { PUBLIC_URL, type TestApp } from './app.js';
import { agentToken, bearer, createAgent, createTenant, createUser, type AgentFixture, type Tenant } from './fixtures.js';
import { totpCode } from './totp.js';
import { SoftAuthenticator } from './webauthn.js';

export interface Human {
  tenant: Tenant;
  userId: string;
  agent: AgentFixture;
  token: string;
  authenticator: SoftAuthenticator;
  totpSecret: string;
}

/**
 * A tenant, a user with a passkey (software authenticator) and a TOTP factor, an agent and its token.
 * The tenant hands the approval URL to its agents (`approvalUrlToAgent`), so tests can play the
 * human with it; pass `{ approvalUrlToAgent: false }` as `appBody` for the default contract.
 */
export async function human(t: TestApp, agentBody: Record<string, unknown> = {}, origin = PUBLIC_URL, appBody: Record<string, unknown> = { approvalUrlToAgent: true }): Promise<Human> {
  const tenant = await createTenant(t, undefined, appBody);
  const userId = await createUser(t, tenant);
  const link = (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send({}).expect(201)).body.url.split('/enroll/')[1];
  const authenticator = new SoftAuthenticator(origin);
  const options = (await t.http.post(`/v1/enrollment/${link}/webauthn/options`).send({}).expect(200)).body;
  await t.http.post(`/v1/enrollment/${link}/webauthn/verify`).send({ response: await authenticator.register(options) }).expect(201);
  const totp = (await t.http.post(`/v1/enrollment/${link}/totp`).send({}).expect(201)).body;
  // Enrol with the code of the previous time step, so the current step stays free for approvals.
  // Near the end of a step the server could already be one step on (and refuse a code two steps
  // old): wait for the next step then.
  const intoStep = Date.now() % 30_000;
  if (intoStep > 27_000) await new Promise((r) => setTimeout(r, 30_000 - intoStep + 100));
  await t.http.post(`/v1/enrollment/${link}/totp/verify`).send({ factorId: totp.factorId, code: await totpCode(totp.secret, Date.now() - 30_000) }).expect(200);
  const agent = await createAgent(t, tenant, userId, { permissionBoundaries: ['files:*', 'research:read', 'payments:send'], ...agentBody });
  return { tenant, userId, agent, token: await agentToken(t, agent), authenticator, totpSecret: totp.secret };
}

export const approvalToken = (url: string) => url.split('/approve/')[1];

export function createStepUp(t: TestApp, h: Human, body: Record<string, unknown> = {}) {
  return t.http.post('/v1/step-ups').set(bearer(h.token)).send({ action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 }, ...body });
}

export async function approveWithPasskey(t: TestApp, h: Human, approvalUrl: string) {
  const token = approvalToken(approvalUrl);
  const options = (await t.http.post(`/v1/approvals/${token}/webauthn/options`).send({}).expect(200)).body;
  return t.http.post(`/v1/approvals/${token}/webauthn/verify`).send({ response: await h.authenticator.assert(options) });
}

export async function approveWithCode(t: TestApp, h: Human, approvalUrl: string, code?: string) {
  return t.http.post(`/v1/approvals/${approvalToken(approvalUrl)}/totp`).send({ code: code ?? (await totpCode(h.totpSecret)) });
}

/** Awaits a request made by an async helper and asserts its status (with the body in the message). */
export async function expectStatus(request: Promise<Response>, status: number): Promise<Response> {
  const res = await request;
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  return res;
}
