import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import type { TestApp } from '../support/app.js';
import { addVirtualAuthenticator, browserAvailable, useBrowserApp } from '../support/browser.js';
import { agentToken, bearer, createAgent, createTenant, createUser, type AgentFixture, type Tenant } from '../support/fixtures.js';
import { totpCode } from '../support/totp.js';

/** A user of a new app with a passkey made by Chromium's virtual authenticator (and a TOTP factor), an agent and its token. */
interface Person {
  tenant: Tenant;
  userId: string;
  agent: AgentFixture;
  token: string;
  totpSecret: string;
  page: Page;
  /** The virtual authenticator that holds the user's passkey. */
  authenticator: Awaited<ReturnType<typeof addVirtualAuthenticator>>;
  /** Console errors, uncaught errors and CSP violations seen by the page. */
  problems: string[];
}

/**
 * Reports every CSP violation (the `securitypolicyviolation` event), console error and uncaught
 * error of the page; a test ends by expecting none.
 */
async function watch(page: Page): Promise<string[]> {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (err) => problems.push(err.message));
  // (Browser code as strings: the tests compile without the DOM library.)
  await page.addInitScript("document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))");
  return problems;
}

async function person(t: TestApp, page: Page, opts: { app?: string; displayName?: string; agent?: Record<string, unknown> } = {}): Promise<Person> {
  // One browser profile serves the suite: start each test signed out.
  await page.context().clearCookies();
  const problems = await watch(page);
  const tenant = await createTenant(t, opts.app);
  const userId = await createUser(t, tenant, { displayName: opts.displayName ?? 'Ada Lovelace' });
  const enrollUrl: string = (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send({}).expect(201)).body.url;
  const authenticator = await addVirtualAuthenticator(page);
  await page.goto(enrollUrl);
  await page.fill('#pk-name', 'Laptop');
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await expect.poll(() => page.textContent('#status'), { timeout: 15_000 }).toContain('added');
  // An authenticator app too, through the enrollment API, with the previous step's code (the current one stays free).
  const link = enrollUrl.split('/enroll/')[1];
  const totp = (await t.http.post(`/v1/enrollment/${link}/totp`).send({ name: 'Phone' }).expect(201)).body;
  const intoStep = Date.now() % 30_000;
  if (intoStep > 27_000) await new Promise((r) => setTimeout(r, 30_000 - intoStep + 100));
  await t.http.post(`/v1/enrollment/${link}/totp/verify`).send({ factorId: totp.factorId, code: await totpCode(totp.secret, Date.now() - 30_000) }).expect(200);
  const agent = await createAgent(t, tenant, userId, { name: 'research-bot', model: 'claude-sonnet-4', permissionBoundaries: ['files:*', 'research:read', 'payments:send'], ...opts.agent });
  return { tenant, userId, agent, token: await agentToken(t, agent), totpSecret: totp.secret, page, authenticator, problems };
}

/**
 * Passkey sign-in without a link (discoverable credential) at /me/login; lands on the dashboard.
 * `conditional`: the browser's autofill (WebAuthn conditional mediation) offers the passkey and the
 * virtual authenticator picks it, no click; `button`: the browser reports no conditional mediation
 * (as many do), so the human presses the button.
 */
async function signInByLogin(p: Person, via: 'conditional' | 'button'): Promise<void> {
  if (via === 'button') await withoutConditionalUi(p.page);
  await p.page.goto(`${new URL(p.page.url()).origin}/me`);
  await p.page.waitForURL(/\/me\/login$/);
  await showingPage(p.page, async () => {
    if (via === 'button') await p.page.getByRole('button', { name: 'Sign in with passkey' }).click();
    await p.page.waitForURL(/\/me$/, { timeout: 15_000 });
    await p.page.getByRole('heading', { name: /Waiting for your approval/ }).waitFor();
  });
}

/** The page's browser reports no conditional mediation: /me/login starts no passkey ceremony by itself. */
async function withoutConditionalUi(page: Page): Promise<void> {
  await page.addInitScript('PublicKeyCredential.isConditionalMediationAvailable = async () => false');
}

/** Runs `steps`; a failure names the page the browser was showing (address and text), not only the locator it waited for. */
async function showingPage<T>(page: Page, steps: () => Promise<T>): Promise<T> {
  try {
    return await steps();
  } catch (err) {
    const text = await page.evaluate('document.body ? document.body.innerText : ""').catch(() => '(no page)');
    (err as Error).message += `\n-- the browser showed ${page.url()}:\n${String(text).slice(0, 1500)}`;
    throw err;
  }
}

/** Sign-in through an app-issued link, with the passkey. */
async function signInByLink(t: TestApp, p: Person): Promise<void> {
  const { url } = (await t.http.post(`/v1/users/${p.userId}/sign-in-links`).set(bearer(p.tenant.apiKey)).send({}).expect(201)).body;
  await p.page.goto(url);
  await showingPage(p.page, async () => {
    await p.page.getByRole('button', { name: 'Sign in with passkey' }).click();
    await p.page.waitForURL(/\/me$/, { timeout: 15_000 });
    await p.page.getByRole('heading', { name: /Waiting for your approval/ }).waitFor();
  });
}

const card = (page: Page, stepUpId: string) => page.locator(`[data-step-up="${stepUpId}"]`);
/** Waits for a pending request's card, which the dashboard's live update (every 3 s) brings in. */
const cardShown = (page: Page, stepUpId: string) => showingPage(page, () => card(page, stepUpId).waitFor({ timeout: 15_000 }));

describe.runIf(browserAvailable)('dashboard in Chromium', () => {
  const env = useBrowserApp();
  // A failed test still closes its page: a page left open keeps polling the service.
  const opened: Page[] = [];
  const newPage = async () => {
    const page = await env.browser.newPage();
    opened.push(page);
    return page;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((page) => page.close().catch(() => undefined)));
  });

  it('passkey sign-in without a link (conditional UI); a step-up made after the page loaded appears live, is approved inline with the passkey and the agent’s long-poll gets the token; no CSP violation', async () => {
    const { t } = env;
    const page = await newPage();
    const p = await person(t, page);
    await signInByLogin(p, 'conditional');
    expect(await page.textContent('[data-section="approvals"]')).toContain('Nothing is waiting for you');
    expect(await page.textContent('[data-section="agents"]')).toContain('research-bot');

    // The agent asks after the page has loaded; the app does not hand the approval URL to it.
    const details = { note: '<b>bold</b>\u202Egnp.exe', bytes: 123456 };
    const created = await t.http.post('/v1/step-ups').set(bearer(p.token))
      .send({ action: 'files:delete', resource: 'drive://q3.pdf', details, bindingMessage: 'Delete <i>the</i> Q3 copy' })
      .expect(201);
    expect(created.body.approvalUrl).toBeUndefined();
    const longPoll = t.http.get(`/v1/step-ups/${created.body.id}?wait=30`).set(bearer(p.token));

    const c = card(page, created.body.id);
    await cardShown(page, created.body.id);
    expect(await page.textContent('#live')).toContain('new request');
    expect(await c.locator('.binding').textContent()).toBe(created.body.bindingCode);
    expect(await c.locator('.action').textContent()).toBe('files:delete');
    expect(await c.locator('.resource').textContent()).toBe('drive://q3.pdf');
    expect(await c.textContent()).toContain('claude-sonnet-4');
    // Agent-written text is text: markup escaped, the bidi override shown as [U+202E].
    const shown = (await c.locator('.details-json').textContent())!;
    expect(shown).toContain('<b>bold</b>[U+202E]gnp.exe');
    expect(await c.locator('.details-json b').count()).toBe(0);
    expect(await c.locator('.binding-message').textContent()).toBe('Delete <i>the</i> Q3 copy');
    expect(await c.locator('.binding-message i').count()).toBe(0);

    await c.getByRole('button', { name: 'Approve with passkey' }).click();
    await expect.poll(() => c.locator('.card-status').textContent(), { timeout: 15_000 }).toContain('You approved');

    const res = await longPoll;
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ status: 'approved', method: 'webauthn', mfaProxyToken: expect.any(String) });
    const verified = await t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(p.tenant.apiKey))
      .send({ token: res.body.mfaProxyToken, action: 'files:delete', resource: 'drive://q3.pdf', details }).expect(200);
    expect(verified.body).toMatchObject({ valid: true, agentId: p.agent.id, method: 'webauthn' });
    // The decided card leaves the list by itself.
    await c.waitFor({ state: 'detached', timeout: 15_000 });
    expect(p.problems).toEqual([]);
    await page.close();
  }, 120_000);

  it('a request decided elsewhere leaves the page live; /me?stepUp=<id> (a push click) focuses that request; without a session /me goes to /me/login', async () => {
    const { t } = env;
    const page = await newPage();
    const p = await person(t, page);
    // This test signs in by link: /me/login must not sign in by itself (conditional UI) meanwhile.
    await withoutConditionalUi(page);
    const origin = new URL(page.url()).origin;
    await page.goto(`${origin}/me`);
    expect(page.url()).toBe(`${origin}/me/login`);
    await signInByLink(t, p);
    const created = await t.http.post('/v1/step-ups').set(bearer(p.token)).send({ action: 'files:share' }).expect(201);
    await cardShown(page, created.body.id);
    // A push notification opens /me?stepUp=<id> (issue 15's push payload): that request gets the focus.
    await page.goto(`${origin}/me?stepUp=${created.body.id}`);
    expect(await page.evaluate('document.activeElement.id')).toBe(`stepup-h-${created.body.id}`);
    await t.http.delete(`/v1/step-ups/${created.body.id}`).set(bearer(p.token)).expect(200);
    await card(page, created.body.id).waitFor({ state: 'detached', timeout: 10_000 });
    expect(await page.textContent('#live')).toContain('decided elsewhere, cancelled or expired');
    expect(p.problems).toEqual([]);
    await page.close();
  }, 120_000);

  it('revoking an agent from the dashboard (after confirming) makes its token refused: 401 at /v1/whoami', async () => {
    const { t } = env;
    const page = await newPage();
    const p = await person(t, page);
    await signInByLink(t, p);
    await t.http.get('/v1/whoami').set(bearer(p.token)).expect(200);

    const row = page.locator(`[data-agent="${p.agent.id}"]`);
    await row.getByRole('button', { name: 'Revoke research-bot…' }).click();
    // Nothing happens before the confirmation.
    await t.http.get('/v1/whoami').set(bearer(p.token)).expect(200);
    const confirm = row.getByRole('button', { name: 'Yes, revoke research-bot' });
    expect(await page.evaluate('document.activeElement.textContent')).toBe('Yes, revoke research-bot');
    await confirm.click();
    await expect.poll(() => page.textContent('#live'), { timeout: 10_000 }).toContain('Revoked research-bot');
    await row.waitFor({ state: 'detached' });

    const refused = await t.http.get('/v1/whoami').set(bearer(p.token));
    expect(refused.status).toBe(401);
    expect(p.problems).toEqual([]);
    await page.close();
  }, 120_000);

  it('a sudo grant approved inline shows with its time left; “End now” makes the sudo token refused: 401 at /v1/whoami', async () => {
    const { t } = env;
    const page = await newPage();
    const p = await person(t, page);
    await signInByLogin(p, 'button');
    const created = await t.http.post('/v1/step-ups').set(bearer(p.token))
      .send({ action: 'research:read', grant: { type: 'sudo', scopes: ['files:delete'], duration: 600 } }).expect(201);
    const c = card(page, created.body.id);
    await cardShown(page, created.body.id);
    expect(await c.getByRole('heading', { level: 3 }).textContent()).toBe('Grant temporary access for 10 min?');
    await c.getByRole('button', { name: 'Approve with passkey' }).click();
    await expect.poll(() => c.locator('.card-status').textContent(), { timeout: 15_000 }).toContain('You approved');
    const fetched = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(p.token)).expect(200)).body;
    const sudo = fetched.sudoToken as string;
    expect(sudo).toEqual(expect.any(String));
    await t.http.get('/v1/whoami').set(bearer(sudo)).expect(200);

    const grant = page.locator(`[data-grant="${created.body.id}"]`);
    await grant.waitFor({ timeout: 15_000 });
    await expect.poll(() => grant.locator('.time-left').textContent()).toMatch(/^(9|10) min \d\d s$/);
    await grant.getByRole('button', { name: 'End now' }).click();
    await expect.poll(() => page.textContent('#live'), { timeout: 10_000 }).toContain('Temporary access ended');
    await grant.waitFor({ state: 'detached' });
    expect((await t.http.get('/v1/whoami').set(bearer(sudo))).status).toBe(401);
    expect(p.problems).toEqual([]);
    await page.close();
  }, 120_000);

  it('keyboard only: Tab reaches a pending request’s “Approve with passkey”, Enter approves; Tab to the code field, a code and Enter approve another', async () => {
    const { t } = env;
    const page = await newPage();
    const p = await person(t, page);
    await signInByLogin(p, 'button');
    const first = (await t.http.post('/v1/step-ups').set(bearer(p.token)).send({ action: 'files:read', resource: 'drive://a.txt' }).expect(201)).body;
    await cardShown(page, first.id);

    /** Presses Tab until the focused element matches `test` (an expression of `el`), at most `max` times. */
    async function tabTo(test: string, max = 25): Promise<number> {
      for (let i = 1; i <= max; i++) {
        await page.keyboard.press('Tab');
        if (await page.evaluate(`(el => ${test})(document.activeElement)`)) return i;
      }
      throw new Error(`never reached by Tab: ${test}`);
    }
    const fromTop = () => page.evaluate('document.activeElement && document.activeElement.blur()');
    await fromTop();
    await tabTo(`el.textContent === 'Approve with passkey'`);
    await page.keyboard.press('Enter');
    const c1 = card(page, first.id);
    await expect.poll(() => c1.locator('.card-status').textContent(), { timeout: 15_000 }).toContain('You approved');
    // Focus stays on the decided request (its heading), not lost to the document.
    expect(await page.evaluate('document.activeElement.tagName')).toBe('H3');
    expect((await t.http.get(`/v1/step-ups/${first.id}`).set(bearer(p.token)).expect(200)).body).toMatchObject({ status: 'approved', method: 'webauthn' });

    const second = (await t.http.post('/v1/step-ups').set(bearer(p.token)).send({ action: 'files:write', resource: 'drive://b.txt' }).expect(201)).body;
    await cardShown(page, second.id);
    await fromTop();
    await tabTo(`el.id === ${JSON.stringify(`code-${second.id}`)}`);
    await page.keyboard.type(await totpCode(p.totpSecret));
    await page.keyboard.press('Enter');
    const c2 = card(page, second.id);
    await expect.poll(() => c2.locator('.card-status').textContent(), { timeout: 15_000 }).toContain('You approved');
    expect((await t.http.get(`/v1/step-ups/${second.id}`).set(bearer(p.token)).expect(200)).body).toMatchObject({ status: 'approved', method: 'totp' });
    expect(p.problems).toEqual([]);
    await page.close();
  }, 120_000);

  it('adds a passkey from the dashboard right after signing in, and removes a factor after confirming', async () => {
    const { t } = env;
    const page = await newPage();
    const p = await person(t, page);
    await signInByLink(t, p);
    const factors = page.locator('[data-section="factors"]');
    // The new passkey lives on another device: the first one already holds this user's credential (excludeCredentials).
    await p.authenticator.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: p.authenticator.authenticatorId });
    await addVirtualAuthenticator(page);
    await page.fill('#new-passkey-name', 'Security key');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await expect.poll(() => page.textContent('#live'), { timeout: 15_000 }).toContain('Passkey added.');
    expect(await factors.locator('h3').allTextContents()).toEqual(['Passkey: Laptop', 'Authenticator app: Phone', 'Passkey: Security key']);

    page.once('dialog', (dialog) => void dialog.accept());
    await factors.getByRole('button', { name: 'Remove Laptop' }).click();
    await expect.poll(() => page.textContent('#live'), { timeout: 10_000 }).toContain('Removed Laptop');
    expect(await factors.locator('h3').allTextContents()).toEqual(['Authenticator app: Phone', 'Passkey: Security key']);
    expect(p.problems).toEqual([]);
    await page.close();
  }, 120_000);

  it('realistic data fits a 375 px phone without horizontal scrolling and a 1280 px desktop (UPDATE_SCREENSHOTS=1 writes docs/dashboard-*.png)', async () => {
    const { t } = env;
    const page = await newPage();
    const p = await person(t, page, { app: 'Acme Drive', displayName: 'Ada Lovelace', agent: { name: 'research-bot', model: 'claude-sonnet-4' } });
    const billing = await createAgent(t, p.tenant, p.userId, { name: 'billing-assistant', model: 'gpt-4.1', permissionBoundaries: ['payments:send', 'invoices:read'] });
    const triage = await createAgent(t, p.tenant, p.userId, { name: 'inbox-triage', model: 'gemini-2.5-pro', permissionBoundaries: ['mail:read', 'mail:label'] });
    const billingToken = await agentToken(t, billing);
    await t.http.get('/v1/whoami').set(bearer(await agentToken(t, triage))).expect(200);
    // A task running for the research agent, and a sudo grant it holds.
    const worker = await generateKeyPair('ES256', { extractable: true });
    await t.http.post('/v1/tasks').set(bearer(p.token)).send({ taskId: 'weekly-research-digest', scopes: ['research:read'], maxDuration: 7200, workerJwk: await exportJWK(worker.publicKey) }).expect(201);
    await signInByLink(t, p);
    const sudo = (await t.http.post('/v1/step-ups').set(bearer(p.token)).send({ action: 'files:delete', resource: 'drive://archive/2023', grant: { type: 'sudo', scopes: ['files:delete'], duration: 900 }, bindingMessage: 'Clean up the 2023 archive' }).expect(201)).body;
    const sudoCard = card(page, sudo.id);
    await cardShown(page, sudo.id);
    await sudoCard.getByRole('button', { name: 'Approve with passkey' }).click();
    await expect.poll(() => sudoCard.locator('.card-status').textContent(), { timeout: 15_000 }).toContain('You approved');
    await t.http.get(`/v1/step-ups/${sudo.id}`).set(bearer(p.token)).expect(200);
    // Two requests waiting: a payment with details, and a sudo grant.
    await t.http.post('/v1/step-ups').set(bearer(billingToken)).send({
      action: 'payments:send', resource: 'iban:DE89370400440532013000',
      details: { amount: '1,250.00', currency: 'EUR', payee: 'Northwind GmbH', invoice: 'INV-2024-0117' },
      bindingMessage: 'Pay invoice INV-2024-0117 to Northwind',
    }).expect(201);
    await t.http.post('/v1/step-ups').set(bearer(p.token)).send({ action: 'research:read', resource: 'https://arxiv.org/list/cs.CR', grant: { type: 'sudo', scopes: ['files:write', 'files:delete'], duration: 300 }, bindingMessage: 'Save the papers I find to your drive' }).expect(201);
    await page.reload();
    await page.locator(`[data-agent="${triage.id}"]`).getByRole('button', { name: 'Suspend' }).click();
    await expect.poll(() => page.textContent('#live'), { timeout: 10_000 }).toContain('Suspended inbox-triage');
    await page.reload();
    await expect.poll(() => page.locator('[data-step-up]').count(), { timeout: 10_000 }).toBe(2);
    await page.evaluate('document.activeElement && document.activeElement.blur()');

    const shots = process.env.UPDATE_SCREENSHOTS === '1' ? join(import.meta.dirname, '../../docs') : null;
    if (shots) mkdirSync(shots, { recursive: true });
    for (const [name, width] of [['phone', 375], ['desktop', 1280]] as const) {
      await page.setViewportSize({ width, height: name === 'phone' ? 812 : 900 });
      await page.evaluate('window.scrollTo(0, 0); new Promise(requestAnimationFrame)');
      const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
      expect(overflow, `horizontal scroll at ${width} px`).toBe(0);
      // The phone picture is one screen, as a phone shows it; the desktop one the whole page.
      if (shots) await page.screenshot({ path: join(shots, `dashboard-${name}.png`), fullPage: name === 'desktop' });
    }
    expect(p.problems).toEqual([]);
    await page.close();
  }, 120_000);
});
