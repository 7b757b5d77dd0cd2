// The human's dashboard (GET /me): live pending approvals decided inline, agents, grants, factors.
// Sections are rendered (and escaped) by the server; this script fetches them again from
// /me/sections/<name> and acts through /v1/me with the session cookie and the CSRF header.
// No inline script or style: the page's CSP allows only scripts from this origin.
(function () {
  'use strict';
  const CSRF = { 'X-Requested-With': 'mfa-proxy' };
  const APPROVALS_EVERY_MS = 3000;
  const HIDDEN_EVERY_MS = 15000;
  const OTHERS_EVERY_MS = 20000;
  // An open tab must not keep an unattended session alive for ever (30 min idle, API.md):
  // live updates pause after this long without a key press, click or touch.
  const ATTENDED_MS = 25 * 60 * 1000;
  const KEEP_DECIDED_MS = 4000;
  const live = document.getElementById('live');
  let lastInput = Date.now();
  let lastOthers = Date.now();
  let paused = false;

  function say(message, kind) {
    live.textContent = message;
    live.className = 'live' + (kind ? ' ' + kind : '');
  }

  function toLogin() {
    window.location.assign('/me/login');
  }

  /** A /v1/me call; a problem+json error becomes an Error with its code (and attempts left). */
  async function call(method, path, body) {
    const headers = Object.assign({}, method === 'GET' ? {} : CSRF, body === undefined ? {} : { 'Content-Type': 'application/json' });
    const res = await fetch('/v1/me' + path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
    if (res.status === 401) { toLogin(); throw new Error('Your session has ended: sign in again.'); }
    if (res.status === 204) return {};
    const json = await res.json().catch(function () { return {}; });
    if (!res.ok) {
      const err = new Error(json.detail || json.title || 'Request failed (' + res.status + ')');
      err.code = json.code;
      err.attemptsRemaining = json.attemptsRemaining;
      throw err;
    }
    return json;
  }

  function errorText(err) {
    if (err && err.name === 'NotAllowedError') return 'The passkey prompt was cancelled.';
    if (err && err.code === 'reauth_required') return 'Adding a factor needs a recent sign-in: sign out and in again, or approve a request with a factor, then retry within 5 minutes.';
    return (err && err.message) || String(err);
  }

  /** A section's fresh HTML from the server (the same renderer as the page), as a template. */
  async function fetchSection(name) {
    const res = await fetch('/me/sections/' + name, { credentials: 'same-origin' });
    if (res.status === 401) { toLogin(); return null; }
    if (!res.ok) return null;
    const template = document.createElement('template');
    template.innerHTML = await res.text();
    return template;
  }

  const bodyOf = (name) => document.querySelector('[data-section="' + name + '"]');

  // ---- times -------------------------------------------------------------------------------
  function localTimes(root) {
    root.querySelectorAll('time[datetime]').forEach(function (t) {
      if (t.dataset.local) return;
      const d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d)) { t.textContent = d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }); t.dataset.local = '1'; }
    });
  }

  function tick() {
    const now = Date.now();
    let expired = false;
    document.querySelectorAll('.time-left[data-expires-at]').forEach(function (el) {
      const s = Math.max(0, Math.round((Date.parse(el.dataset.expiresAt) - now) / 1000));
      const text = s <= 0 ? 'ended' : s >= 3600 ? Math.floor(s / 3600) + ' h ' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + ' min' : Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
      if (el.textContent !== text) el.textContent = text;
      if (s <= 0 && !el.dataset.ended) { el.dataset.ended = '1'; expired = true; }
    });
    if (expired) refreshAll();
  }

  // ---- pending approvals, merged by id so a card being used is never replaced ----------------
  function cardHeading(card) { return card.querySelector('h3'); }

  /** Moves focus out of a card that is about to go: to the next card, else to the section heading. */
  function rescueFocus(card) {
    if (!card.contains(document.activeElement)) return;
    let next = card.nextElementSibling;
    while (next && !next.matches('[data-step-up]:not(.decided)')) next = next.nextElementSibling;
    (next ? cardHeading(next) : document.getElementById('approvals-h')).focus();
  }

  function mergeApprovals(template) {
    const list = bodyOf('approvals');
    const fresh = Array.from(template.content.querySelectorAll('[data-step-up]'));
    const ids = new Set(fresh.map(function (c) { return c.dataset.stepUp; }));
    const now = Date.now();
    let added = 0;
    list.querySelectorAll('[data-step-up]').forEach(function (card) {
      if (ids.has(card.dataset.stepUp) && !card.classList.contains('decided')) return;
      if (card.dataset.keepUntil && Number(card.dataset.keepUntil) > now) return;
      if (!card.classList.contains('decided')) say('A request was decided elsewhere, cancelled or expired: ' + cardHeading(card).textContent);
      rescueFocus(card);
      card.remove();
    });
    fresh.forEach(function (card) {
      if (document.getElementById(card.id)) return;
      list.append(document.importNode(card, true));
      added++;
    });
    list.querySelectorAll('.empty').forEach(function (p) { p.remove(); });
    const pending = list.querySelectorAll('[data-step-up]:not(.decided)').length;
    if (pending === 0 && !list.querySelector('[data-step-up]')) {
      const empty = template.content.querySelector('.empty');
      if (empty) list.append(document.importNode(empty, true));
    }
    document.getElementById('approvals-count').textContent = pending ? '(' + pending + ')' : '';
    if (added) say(added === 1 ? 'A new request is waiting for your approval.' : added + ' new requests are waiting for your approval.');
    localTimes(list);
  }

  async function refreshApprovals() {
    const template = await fetchSection('approvals');
    if (template) mergeApprovals(template);
  }

  /** Replaces a section unless the human is working in it (focus inside or a confirmation open). */
  async function refreshSection(name, force) {
    const body = bodyOf(name);
    if (!force && (body.contains(document.activeElement) || body.querySelector('.confirm:not([hidden])'))) return;
    const template = await fetchSection(name);
    if (!template) return;
    const wrap = document.createElement('div');
    wrap.append(template.content.cloneNode(true));
    if (wrap.innerHTML === body.dataset.rendered) return;
    body.replaceChildren(template.content);
    body.dataset.rendered = wrap.innerHTML;
    localTimes(body);
  }

  function refreshAll() {
    return Promise.all([refreshApprovals(), refreshSection('agents'), refreshSection('grants'), refreshSection('activity')]).catch(function () {});
  }

  async function poll() {
    const idle = Date.now() - lastInput > ATTENDED_MS;
    if (idle !== paused) {
      paused = idle;
      if (idle) say('Live updates paused: nothing happened here for a while. Press any key or click to resume.');
    }
    if (!paused) {
      try {
        await refreshApprovals();
        if (Date.now() - lastOthers > OTHERS_EVERY_MS) {
          lastOthers = Date.now();
          await Promise.all([refreshSection('agents'), refreshSection('grants'), refreshSection('activity')]);
        }
      } catch (_) { /* offline for a moment: the next round tries again */ }
    }
    setTimeout(poll, document.hidden ? HIDDEN_EVERY_MS : APPROVALS_EVERY_MS);
  }

  ['keydown', 'pointerdown', 'touchstart'].forEach(function (type) {
    document.addEventListener(type, function () {
      lastInput = Date.now();
      if (paused) { paused = false; say('Live updates resumed.'); refreshAll(); }
    }, { passive: true, capture: true });
  });

  // ---- deciding a step-up ------------------------------------------------------------------
  function cardSay(card, message, kind) {
    const el = card.querySelector('.card-status');
    el.textContent = message;
    el.className = 'card-status' + (kind ? ' ' + kind : '');
  }

  function decided(card, status) {
    const text = status === 'approved' ? 'You approved this request.' : 'You denied this request.';
    card.classList.add('decided');
    card.dataset.keepUntil = String(Date.now() + KEEP_DECIDED_MS);
    const decide = card.querySelector('.decide');
    if (decide) decide.remove();
    cardSay(card, text, status === 'approved' ? 'ok' : '');
    cardHeading(card).focus();
    say(text + ' ' + cardHeading(card).textContent, status === 'approved' ? 'ok' : '');
    const pending = bodyOf('approvals').querySelectorAll('[data-step-up]:not(.decided)').length;
    document.getElementById('approvals-count').textContent = pending ? '(' + pending + ')' : '';
    setTimeout(refreshAll, KEEP_DECIDED_MS + 100);
  }

  async function decide(card, run, busy) {
    const path = '/step-ups/' + encodeURIComponent(card.dataset.stepUp);
    const buttons = card.querySelectorAll('.decide button');
    buttons.forEach(function (b) { b.disabled = true; });
    try {
      if (busy) cardSay(card, busy);
      const r = await run(path);
      decided(card, r.status);
    } catch (err) {
      cardSay(card, errorText(err) + (err.attemptsRemaining !== undefined ? ' (' + err.attemptsRemaining + ' attempts left)' : ''), 'error');
      buttons.forEach(function (b) { b.disabled = false; });
      if (err.code === 'not_pending' || err.code === 'expired' || err.code === 'not_found') refreshApprovals();
      return false;
    }
    return true;
  }

  const stepUpActions = {
    'approve-passkey': function (card) {
      return decide(card, async function (path) {
        const options = await call('POST', path + '/webauthn/options', {});
        const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options });
        return call('POST', path + '/webauthn/verify', { response: response });
      }, 'Confirm with your passkey…');
    },
    deny: function (card) {
      return decide(card, function (path) { return call('POST', path + '/deny', {}); });
    },
  };

  async function approveWithCode(form) {
    const card = form.closest('[data-step-up]');
    const input = form.querySelector('input[name="code"]');
    const code = input.value.trim();
    if (!/^\d{6}$/.test(code)) { cardSay(card, 'Enter the 6 digits your authenticator app shows.', 'error'); input.focus(); return; }
    const ok = await decide(card, function (path) { return call('POST', path + '/totp', { code: code }); });
    if (!ok && document.body.contains(input)) input.select();
  }

  // ---- agents, grants, tasks ---------------------------------------------------------------
  function rowOf(el, attr) { return el.closest('[data-' + attr + ']'); }

  async function afterChange(message, focusId, sections) {
    await Promise.all(sections.map(function (s) { return s === 'approvals' ? refreshApprovals() : refreshSection(s, true); }));
    say(message, 'ok');
    const target = document.getElementById(focusId);
    if (target && !target.contains(document.activeElement)) target.focus();
  }

  async function act(button, run, message, focusId, sections) {
    button.disabled = true;
    try {
      await run();
      await afterChange(message, focusId, sections);
    } catch (err) {
      say(errorText(err), 'error');
      button.disabled = false;
    }
  }

  const rowActions = {
    suspend: function (b) {
      const row = rowOf(b, 'agent');
      return act(b, function () { return call('POST', '/agents/' + encodeURIComponent(row.dataset.agent) + '/suspend', {}); },
        'Suspended ' + row.dataset.name + ': its tokens are refused until you resume it.', 'agents-h', ['agents', 'activity']);
    },
    resume: function (b) {
      const row = rowOf(b, 'agent');
      return act(b, function () { return call('POST', '/agents/' + encodeURIComponent(row.dataset.agent) + '/resume', {}); },
        'Resumed ' + row.dataset.name + '.', 'agents-h', ['agents', 'activity']);
    },
    revoke: function (b) {
      const confirm = rowOf(b, 'agent').querySelector('.confirm');
      confirm.hidden = false;
      confirm.querySelector('[data-act="revoke-confirm"]').focus();
    },
    'revoke-cancel': function (b) {
      const row = rowOf(b, 'agent');
      row.querySelector('.confirm').hidden = true;
      row.querySelector('[data-act="revoke"]').focus();
    },
    'revoke-confirm': function (b) {
      const row = rowOf(b, 'agent');
      return act(b, function () { return call('DELETE', '/agents/' + encodeURIComponent(row.dataset.agent)); },
        'Revoked ' + row.dataset.name + ' for good.', 'agents-h', ['agents', 'grants', 'approvals', 'activity']);
    },
    'end-grant': function (b) {
      return act(b, function () { return call('DELETE', '/grants/' + encodeURIComponent(rowOf(b, 'grant').dataset.grant)); },
        'Temporary access ended: its token is refused from now on.', 'grants-h', ['grants', 'activity']);
    },
    'end-task': function (b) {
      return act(b, function () { return call('DELETE', '/tasks/' + encodeURIComponent(rowOf(b, 'task').dataset.task)); },
        'Task ended: it gets no more tokens.', 'grants-h', ['grants', 'activity']);
    },
    'remove-factor': function (b) {
      const row = rowOf(b, 'factor');
      if (!window.confirm('Remove the factor “' + row.dataset.name + '”? You can no longer sign in or approve with it.')) return;
      return act(b, function () { return call('DELETE', '/factors/' + encodeURIComponent(row.dataset.factor)); },
        'Removed ' + row.dataset.name + '.', 'factors-h', ['factors', 'activity']);
    },
  };

  // ---- adding a factor ---------------------------------------------------------------------
  let totpFactorId = null;
  const factorActions = {
    'add-passkey': function (b) {
      return act(b, async function () {
        if (!window.PublicKeyCredential) throw new Error('This browser does not support passkeys.');
        const name = document.getElementById('new-passkey-name').value.trim() || 'Passkey';
        say('Follow your browser’s prompt to create the passkey…');
        const options = await call('POST', '/factors/webauthn/options', { name: name });
        const response = await SimpleWebAuthnBrowser.startRegistration({ optionsJSON: options });
        await call('POST', '/factors/webauthn/verify', { response: response, name: name });
        b.disabled = false;
      }, 'Passkey added.', 'factors-h', ['factors', 'activity']);
    },
    'add-totp': async function (b) {
      b.disabled = true;
      try {
        const name = document.getElementById('new-totp-name').value.trim() || 'Authenticator app';
        const created = await call('POST', '/factors/totp', { name: name });
        totpFactorId = created.factorId;
        document.getElementById('totp-qr').src = 'data:image/svg+xml;base64,' + btoa(created.qrSvg);
        document.getElementById('totp-secret').textContent = created.secret;
        document.getElementById('totp-confirm').hidden = false;
        document.getElementById('totp-confirm-code').focus();
        say('Scan the QR code, then enter the 6-digit code your app shows.');
      } catch (err) {
        say(errorText(err), 'error');
      } finally {
        b.disabled = false;
      }
    },
  };

  async function confirmTotp(form) {
    const input = document.getElementById('totp-confirm-code');
    try {
      await call('POST', '/factors/totp/verify', { factorId: totpFactorId, code: input.value.trim() });
      form.hidden = true;
      document.getElementById('totp-secret').textContent = '';
      document.getElementById('totp-qr').removeAttribute('src');
      input.value = '';
      await afterChange('Authenticator app added.', 'factors-h', ['factors', 'activity']);
    } catch (err) {
      say(errorText(err), 'error');
      input.select();
    }
  }

  // ---- wiring: one listener for every button and form, present or added later ---------------
  document.addEventListener('click', function (event) {
    const button = event.target.closest('button[data-act]');
    if (!button || button.disabled) return;
    const name = button.dataset.act;
    const card = button.closest('[data-step-up]');
    if (card && stepUpActions[name]) return void stepUpActions[name](card);
    if (rowActions[name]) return void rowActions[name](button);
    if (factorActions[name]) return void factorActions[name](button);
  });

  document.addEventListener('submit', function (event) {
    const form = event.target;
    if (form.matches('form[data-act="approve-code"]')) { event.preventDefault(); approveWithCode(form); }
    else if (form.id === 'totp-confirm') { event.preventDefault(); confirmTotp(form); }
  });

  document.getElementById('sign-out').addEventListener('click', async function () {
    try { await call('POST', '/sign-out', {}); } catch (_) { /* signed out either way */ }
    toLogin();
  });

  // A push notification opens /me?stepUp=<id>: bring that request into view.
  function focusRequested() {
    const id = new URLSearchParams(window.location.search).get('stepUp');
    const card = id && document.getElementById('step-up-' + id);
    if (card) { card.scrollIntoView({ block: 'start' }); cardHeading(card).focus(); }
  }

  // What the server rendered, before times are localised: a refresh replaces a section only when it changed.
  ['agents', 'grants', 'factors', 'activity'].forEach(function (name) {
    const body = bodyOf(name);
    body.dataset.rendered = body.innerHTML;
  });
  localTimes(document);
  focusRequested();
  tick();
  setInterval(tick, 1000);
  setTimeout(poll, APPROVALS_EVERY_MS);
})();
