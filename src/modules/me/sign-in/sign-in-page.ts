import { escapeHtml, layout } from '../../../web/html.js';

/**
 * The sign-in page of a link: minimal for now (the dashboard's pages will style it). Same CSP and
 * escaping as the approval page; the ceremony runs in /assets/signin.js with the WebAuthn bundle.
 */
export function signInPage(token: string, info: { app: { name: string }; user: { displayName: string }; methods: string[] }): string {
  return layout(
    `Sign in — ${info.app.name}`,
    `<h1>Sign in to ${escapeHtml(info.app.name)}</h1>
<p>Signing in as <strong>${escapeHtml(info.user.displayName)}</strong>. This link works once.</p>
${info.methods.includes('webauthn') ? '<button id="signin-passkey" type="button">Sign in with passkey</button>' : ''}
${info.methods.includes('totp') ? `<form id="totp-form" novalidate>
  <label for="totp-code">Code from your authenticator app</label>
  <input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6">
  <button type="submit" id="signin-code">Sign in with code</button>
</form>` : ''}
<p id="status" role="alert"></p>
<script src="/assets/simplewebauthn-browser.js"></script>
<script src="/assets/signin.js"></script>`,
    ` data-token="${escapeHtml(token)}"`,
  );
}

/** Passkey sign-in without a link (discoverable credentials), offered in the field by conditional UI where the browser can. */
export function loginPage(): string {
  return layout(
    'Sign in',
    `<h1>Sign in</h1>
<p>Use the passkey you registered for your account. Your browser may offer it in the field below.</p>
<form id="login-form" novalidate>
  <label for="login-username">Account</label>
  <input id="login-username" name="username" autocomplete="username webauthn" autocapitalize="none" spellcheck="false" placeholder="Choose your passkey">
  <button id="signin-passkey" type="submit">Sign in with passkey</button>
</form>
<p class="muted">No passkey on this device? Ask the app for a sign-in link.</p>
<p id="status" role="alert"></p>
<script src="/assets/simplewebauthn-browser.js"></script>
<script src="/assets/signin.js"></script>`,
  );
}
