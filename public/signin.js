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
  let clicked = false;
  async function signInWithPasskey(event) {
    if (event) event.preventDefault();
    clicked = true;
    passkey.disabled = true;
    try {
      say('Confirm with your passkey…');
      // A new ceremony aborts the conditional one below (SimpleWebAuthn's abort service).
      const options = await call('/webauthn/options', {});
      const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options });
      await call('/webauthn/verify', { response: response });
      done();
    } catch (err) {
      say(err && err.name === 'NotAllowedError' ? 'The passkey prompt was cancelled.' : err.message);
    } finally {
      passkey.disabled = false;
    }
  }
  const loginForm = document.getElementById('login-form');
  if (loginForm) loginForm.addEventListener('submit', signInWithPasskey);
  else if (passkey) passkey.addEventListener('click', function () { signInWithPasskey(); });

  // Conditional UI (/me/login): the browser offers the passkeys in the field's autofill, no click needed.
  async function conditional() {
    if (!(await SimpleWebAuthnBrowser.browserSupportsWebAuthnAutofill())) return;
    try {
      const options = await call('/webauthn/options', {});
      // Started after a click, it would abort the click's ceremony instead.
      if (clicked) return;
      const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options, useBrowserAutofill: true });
      await call('/webauthn/verify', { response: response });
      done();
    } catch (err) {
      // Aborted by the button's ceremony, or nothing chosen: the button still works.
      if (err && err.name !== 'AbortError' && err.name !== 'NotAllowedError') say(err.message);
    }
  }
  if (!token && loginForm) conditional();

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
