// Enrollment page: registers a passkey (WebAuthn) or an authenticator app (TOTP) through the
// enrollment API. No inline script: the page's CSP allows only scripts from this origin.
(function () {
  'use strict';
  const token = document.body.dataset.token;
  const base = '/v1/enrollment/' + encodeURIComponent(token);
  const statusEl = document.getElementById('status');
  let totpFactorId = null;

  function say(message, kind) {
    statusEl.textContent = message;
    statusEl.className = kind || '';
  }

  async function call(path, body, method) {
    const res = await fetch(base + path, {
      method: method || 'POST',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
    });
    const json = await res.json().catch(function () { return {}; });
    if (!res.ok) throw new Error(json.detail || json.title || 'Request failed (' + res.status + ')');
    return json;
  }

  async function refresh() {
    const info = await call('', undefined, 'GET');
    const list = document.getElementById('factors');
    list.replaceChildren();
    if (info.factors.length === 0) {
      const li = document.createElement('li');
      li.textContent = 'Nothing yet.';
      list.append(li);
    }
    for (const f of info.factors) {
      const li = document.createElement('li');
      li.textContent = (f.type === 'webauthn' ? 'Passkey: ' : 'Authenticator app: ') + f.name;
      li.dataset.factorId = f.id;
      list.append(li);
    }
  }

  document.getElementById('pk-add').addEventListener('click', async function (event) {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      if (!window.PublicKeyCredential) throw new Error('This browser does not support passkeys.');
      const name = document.getElementById('pk-name').value.trim() || 'Passkey';
      say('Follow your browser’s prompt to create the passkey…');
      const options = await call('/webauthn/options', { name: name });
      const response = await SimpleWebAuthnBrowser.startRegistration({ optionsJSON: options });
      await call('/webauthn/verify', { response: response, name: name });
      say('Passkey “' + name + '” added.', 'ok');
      await refresh();
    } catch (err) {
      say(err && err.name === 'NotAllowedError' ? 'The passkey prompt was cancelled.' : (err.message || String(err)), 'error');
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById('totp-start').addEventListener('click', async function (event) {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const name = document.getElementById('totp-name').value.trim() || 'Authenticator app';
      const created = await call('/totp', { name: name });
      totpFactorId = created.factorId;
      const qr = document.getElementById('totp-qr');
      qr.src = 'data:image/svg+xml;base64,' + btoa(created.qrSvg);
      document.getElementById('totp-secret').textContent = created.secret;
      document.getElementById('totp-setup').hidden = false;
      document.getElementById('totp-code').focus();
      say('Scan the QR code, then enter the 6-digit code your app shows.');
    } catch (err) {
      say(err.message || String(err), 'error');
      button.disabled = false;
    }
  });

  document.getElementById('totp-form').addEventListener('submit', async function (event) {
    event.preventDefault();
    const code = document.getElementById('totp-code').value.trim();
    try {
      await call('/totp/verify', { factorId: totpFactorId, code: code });
      document.getElementById('totp-setup').hidden = true;
      document.getElementById('totp-start').disabled = false;
      say('Authenticator app added.', 'ok');
      await refresh();
    } catch (err) {
      say(err.message || String(err), 'error');
    }
  });
})();
