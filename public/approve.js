// Approval page: approve with a passkey or a code, or deny; follows the decision live.
(function () {
  'use strict';
  const token = document.body.dataset.token;
  const base = '/v1/approvals/' + encodeURIComponent(token);
  const outcome = document.getElementById('outcome');
  const statusEl = document.getElementById('status');
  const actions = document.getElementById('actions');
  const timeLeft = document.getElementById('time-left');
  const expiresAt = Date.parse(timeLeft.dataset.expiresAt);
  const TEXT = { pending: 'Waiting for your decision', approved: 'Approved', denied: 'Denied', expired: 'Expired', cancelled: 'Cancelled by the agent' };
  let done = false;

  function say(message) { statusEl.textContent = message; }

  function show(status) {
    outcome.replaceChildren();
    const strong = document.createElement('strong');
    strong.textContent = TEXT[status] || status;
    outcome.append(strong);
    if (status !== 'pending') {
      done = true;
      actions.hidden = true;
    }
  }

  async function call(path, body) {
    const res = await fetch(base + path, {
      method: body === undefined ? 'GET' : 'POST',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
    });
    const json = await res.json().catch(function () { return {}; });
    if (!res.ok) {
      const err = new Error(json.detail || json.title || 'Request failed');
      err.code = json.code;
      err.attemptsRemaining = json.attemptsRemaining;
      throw err;
    }
    return json;
  }

  async function refresh() {
    try {
      const a = await call('');
      show(a.status);
    } catch (err) {
      if (err.code === 'not_found') { show('expired'); }
    }
  }

  function tick() {
    const s = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    timeLeft.textContent = s > 0 ? Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s' : 'expired';
    if (s === 0 && !done) refresh();
  }

  const passkey = document.getElementById('approve-passkey');
  if (passkey) passkey.addEventListener('click', async function () {
    passkey.disabled = true;
    try {
      say('Confirm with your passkey…');
      const options = await call('/webauthn/options', {});
      const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options });
      const r = await call('/webauthn/verify', { response: response });
      show(r.status);
      say('You approved this request.');
    } catch (err) {
      say(err && err.name === 'NotAllowedError' ? 'The passkey prompt was cancelled.' : err.message);
      refresh();
    } finally {
      passkey.disabled = false;
    }
  });

  const form = document.getElementById('totp-form');
  if (form) form.addEventListener('submit', async function (event) {
    event.preventDefault();
    const input = document.getElementById('totp-code');
    try {
      const r = await call('/totp', { code: input.value.trim() });
      show(r.status);
      say('You approved this request.');
    } catch (err) {
      say(err.message + (err.attemptsRemaining !== undefined ? ' (' + err.attemptsRemaining + ' attempts left)' : ''));
      input.select();
      refresh();
    }
  });

  document.getElementById('deny').addEventListener('click', async function () {
    try {
      const r = await call('/deny', {});
      show(r.status);
      say('You denied this request.');
    } catch (err) {
      say(err.message);
      refresh();
    }
  });

  tick();
  setInterval(tick, 1000);
  // Live status: the decision may be taken elsewhere (another device, expiry, the agent cancelling).
  // Server-Sent Events scoped to this approval; polling only where EventSource is missing.
  if (window.EventSource) {
    const events = new EventSource(base + '/events');
    events.addEventListener('status', function (event) {
      const data = JSON.parse(event.data);
      show(data.status);
      if (data.status !== 'pending') events.close();
    });
    events.onerror = function () { if (done) events.close(); };
  } else {
    setInterval(function () { if (!done) refresh(); }, 2000);
  }
})();
