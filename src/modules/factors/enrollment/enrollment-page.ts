import type { EnrollmentInfoDto } from '../dto/factor.dto.js';
import { escapeHtml, layout } from '../../../web/html.js';

/** The enrollment page: server-rendered, everything dynamic escaped, behaviour in /assets/enroll.js. */
export function enrollmentPage(token: string, info: EnrollmentInfoDto): string {
  const app = escapeHtml(info.app.name);
  const factors = info.factors.length
    ? info.factors.map((f) => `<li data-factor-id="${escapeHtml(f.id)}">${f.type === 'webauthn' ? 'Passkey' : 'Authenticator app'}: ${escapeHtml(f.name)}</li>`).join('\n')
    : '<li>Nothing yet.</li>';
  return layout(
    `Set up approvals for ${info.app.name}`,
    `<h1>Set up approvals for ${app}</h1>
<p>Hello <strong>${escapeHtml(info.user.displayName)}</strong>. AI agents acting for you in ${app} will ask for your approval before they do
something sensitive. Add a passkey or an authenticator app; only you can use it to approve.</p>
<p class="muted">This link is for you alone and expires <time datetime="${escapeHtml(info.expiresAt)}">${escapeHtml(info.expiresAt.replace('T', ' ').slice(0, 16))} UTC</time>.</p>

<section aria-labelledby="pk-h">
  <h2 id="pk-h">Passkey</h2>
  <p class="muted">Uses your device's screen lock, a security key or a password manager.</p>
  <label for="pk-name">Name for this passkey</label>
  <input id="pk-name" name="pk-name" maxlength="100" value="Passkey" autocomplete="off">
  <button id="pk-add" type="button">Add a passkey</button>
</section>

<section aria-labelledby="totp-h">
  <h2 id="totp-h">Authenticator app</h2>
  <label for="totp-name">Name for this app</label>
  <input id="totp-name" name="totp-name" maxlength="100" value="Authenticator app" autocomplete="off">
  <button id="totp-start" type="button">Set up an authenticator app</button>
  <div id="totp-setup" hidden>
    <p><img id="totp-qr" class="qr" alt="QR code to scan with your authenticator app"></p>
    <p>Can't scan? Enter this key: <code id="totp-secret"></code></p>
    <form id="totp-form" novalidate>
      <label for="totp-code">6-digit code from the app</label>
      <input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required>
      <button type="submit">Confirm code</button>
    </form>
  </div>
</section>

<section aria-labelledby="list-h">
  <h2 id="list-h">Enrolled</h2>
  <ul id="factors" class="factors">
${factors}
  </ul>
</section>
<p id="status" role="status" aria-live="polite"></p>
<script src="/assets/simplewebauthn-browser.js"></script>
<script src="/assets/enroll.js"></script>`,
    ` data-token="${escapeHtml(token)}"`,
  );
}
