// Sign-in page: a link's passkey or code, or a discoverable passkey (/me/login); then the dashboard.
(function () {
  'use strict';
  const token = document.body.dataset.token;
  const base = token ? '/v1/me/sign-in/' + encodeURIComponent(token) : '/v1/me/login';
  const statusEl = document.getElementById('status');

  function say(message) { statusEl.textContent = message; }

  async function call(path, body) {
    const res = await fetch(base + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'mfa-proxy' },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
    const json = await res.json().catch(function () { return {}; });
    if (!res.ok) {
      const err = new Error(json.detail || json.title || 'Request failed');
      err.attemptsRemaining = json.attemptsRemaining;
      throw err;
    }
    return json;
  }

  function done() {
    say('Signed in.');
    window.location.assign('/me');
  }

  const passkey = document.getElementById('signin-passkey');
  if (passkey) passkey.addEventListener('click', async function () {
    passkey.disabled = true;
    try {
      say('Confirm with your passkey…');
      const options = await call('/webauthn/options', {});
      const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options });
      await call('/webauthn/verify', { response: response });
      done();
    } catch (err) {
      say(err && err.name === 'NotAllowedError' ? 'The passkey prompt was cancelled.' : err.message);
    } finally {
      passkey.disabled = false;
    }
  });

  const form = document.getElementById('totp-form');
  if (form) form.addEventListener('submit', async function (event) {
    event.preventDefault();
    const input = document.getElementById('totp-code');
    try {
      await call('/totp', { code: input.value.trim() });
      done();
    } catch (err) {
      say(err.message + (err.attemptsRemaining !== undefined ? ' (' + err.attemptsRemaining + ' attempts left)' : ''));
      input.select();
    }
  });
})();
