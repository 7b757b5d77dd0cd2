import { describe, expect, it } from 'vitest';
import { addVirtualAuthenticator, browserAvailable, useBrowserApp } from '../support/browser.js';
import { bearer, createTenant, createUser } from '../support/fixtures.js';
import { totpCode } from '../support/totp.js';

describe.runIf(browserAvailable)('enrollment page in Chromium', () => {
  const env = useBrowserApp();

  it('registers a passkey by clicking, and the factor appears in the API', async () => {
    const { t, browser } = env;
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant, { displayName: 'Grace Hopper' });
    const link = (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send({}).expect(201)).body.url;

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && errors.push(`${m.text()} ${JSON.stringify(m.location())}`));
    const { cdp, authenticatorId } = await addVirtualAuthenticator(page);

    await page.goto(link);
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toContain('Set up approvals');
    expect(await page.textContent('main')).toContain('Grace Hopper');

    await page.getByLabel('Name for this passkey').fill('Chromium passkey');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await expect.poll(() => page.textContent('#status'), { timeout: 15_000 }).toContain('Passkey “Chromium passkey” added.');
    await expect.poll(() => page.textContent('#factors')).toContain('Passkey: Chromium passkey');

    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(credentials).toHaveLength(1);
    const user = await t.http.get(`/v1/users/${userId}`).set(bearer(tenant.apiKey)).expect(200);
    expect(user.body.factors).toEqual([expect.objectContaining({ type: 'webauthn', name: 'Chromium passkey' })]);
    expect(errors, errors.join("\n")).toEqual([]);
    await page.close();
  });

  it('sets up an authenticator app with the keyboard only', async () => {
    const { t, browser } = env;
    const tenant = await createTenant(t);
    const userId = await createUser(t, tenant);
    const link = (await t.http.post(`/v1/users/${userId}/enrollment-links`).set(bearer(tenant.apiKey)).send({}).expect(201)).body.url;
    const page = await browser.newPage();
    await page.goto(link);

    // Tab until the TOTP button has focus, then activate it with Enter.
    for (let i = 0; i < 20; i++) {
      await page.keyboard.press('Tab');
      if ((await page.evaluate('document.activeElement?.id')) === 'totp-start') break;
    }
    expect(await page.evaluate('document.activeElement?.id')).toBe('totp-start');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.isVisible('#totp-setup')).toBe(true);
    const secret = (await page.textContent('#totp-secret'))!.trim();
    expect(await page.getAttribute('#totp-qr', 'src')).toMatch(/^data:image\/svg\+xml;base64,/);
    // Focus moved to the code field: type and submit with Enter.
    expect(await page.evaluate('document.activeElement?.id')).toBe('totp-code');
    await page.keyboard.type(await totpCode(secret));
    await page.keyboard.press('Enter');
    await expect.poll(() => page.textContent('#status')).toContain('Authenticator app added.');
    const user = await t.http.get(`/v1/users/${userId}`).set(bearer(tenant.apiKey)).expect(200);
    expect(user.body.factors).toEqual([expect.objectContaining({ type: 'totp' })]);
    await page.close();
  });
});
