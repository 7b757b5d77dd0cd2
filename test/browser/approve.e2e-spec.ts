import { describe, expect, it } from 'vitest';
import { addVirtualAuthenticator, browserAvailable, useBrowserApp } from '../support/browser.js';
import { agentToken, bearer, createAgent, createTenant, createUser } from '../support/fixtures.js';

describe.runIf(browserAvailable)('approval page in Chromium', () => {
  const env = useBrowserApp();

  it('a passkey enrolled on the enrollment page approves a step-up by clicking; the agent’s long-poll returns the token', async () => {
    const { t, browser } = env;
    const tenant = await createTenant(t, undefined, { approvalUrlToAgent: true });
    const userId = await createUser(t, tenant, { displayName: 'Ada' });
    const enrollUrl = (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send({}).expect(201)).body.url;
    const page = await browser.newPage();
    await addVirtualAuthenticator(page);

    await page.goto(enrollUrl);
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await expect.poll(() => page.textContent('#status'), { timeout: 15_000 }).toContain('added');

    const agent = await createAgent(t, tenant, userId, { permissionBoundaries: ['files:*'] });
    const token = await agentToken(t, agent);
    const created = await t.http
      .post('/v1/step-ups')
      .set(bearer(token))
      .send({ action: 'files:delete', resource: 'drive://q3.pdf', details: { note: '<b>bold</b>\u202Egnp.exe' }, bindingMessage: 'Delete <i>the</i> Q3 copy' })
      .expect(201);
    // The agent waits for the decision while the human acts.
    const poll = t.http.get(`/v1/step-ups/${created.body.id}?wait=25`).set(bearer(token));

    await page.goto(created.body.approvalUrl);
    expect(await page.textContent('#binding-code')).toBe(created.body.bindingCode);
    expect(await page.textContent('#action')).toBe('files:delete');
    // Agent-written text is shown as text: markup escaped, the bidi override made visible.
    const details = (await page.textContent('#details'))!;
    expect(details).toContain('<b>bold</b>');
    expect(details).toContain('[U+202E]');
    expect(await page.locator('#details b').count()).toBe(0);
    expect(await page.textContent('#binding-message')).toBe('Delete <i>the</i> Q3 copy');
    expect(await page.locator('#binding-message i').count()).toBe(0);

    await page.getByRole('button', { name: 'Approve with passkey' }).click();
    await expect.poll(() => page.textContent('#outcome'), { timeout: 15_000 }).toContain('Approved');

    const res = await poll;
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'approved', method: 'webauthn', mfaProxyToken: expect.any(String) });
    const verified = await t.http
      .post('/v1/mfa-proxy-tokens/verify')
      .set(bearer(tenant.apiKey))
      .send({ token: res.body.mfaProxyToken, action: 'files:delete', resource: 'drive://q3.pdf', details: { note: '<b>bold</b>\u202Egnp.exe' } })
      .expect(200);
    expect(verified.body.valid).toBe(true);
    await page.close();
  });

  it('the page follows a decision taken elsewhere', async () => {
    const { t, browser } = env;
    const tenant = await createTenant(t, undefined, { approvalUrlToAgent: true });
    const userId = await createUser(t, tenant);
    const enrollUrl = (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send({}).expect(201)).body.url;
    const token = enrollUrl.split('/enroll/')[1];
    const totp = (await t.http.post(`/v1/enrollment/${token}/totp`).send({}).expect(201)).body;
    const { totpCode } = await import('../support/totp.js');
    await t.http.post(`/v1/enrollment/${token}/totp/verify`).send({ factorId: totp.factorId, code: await totpCode(totp.secret) }).expect(200);
    const agent = await createAgent(t, tenant, userId, { permissionBoundaries: ['files:*'] });
    const agentTok = await agentToken(t, agent);
    const created = await t.http.post('/v1/step-ups').set(bearer(agentTok)).send({ action: 'files:share' }).expect(201);

    const page = await browser.newPage();
    await page.goto(created.body.approvalUrl);
    expect(await page.textContent('#outcome')).toContain('Waiting');
    await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(agentTok)).expect(200);
    await expect.poll(() => page.textContent('#outcome'), { timeout: 10_000 }).toContain('Cancelled');
    expect(await page.isHidden('#actions')).toBe(true);
    await page.close();
  });
});
