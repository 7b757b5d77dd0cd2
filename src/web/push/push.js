// Web Push for the dashboard (served at /me/push.js): window.mfaProxyPush = { supported, state,
// enable, disable }. enable() registers the service worker (/me/sw.js, scope /me), asks for
// permission, subscribes with the service's VAPID key and registers the subscription
// (POST /v1/me/push-subscriptions with the session cookie and the CSRF header).
// Optional wiring: a <button data-mpx-push> toggles it and shows the state in its text.
(function () {
  'use strict';
  const SW_URL = '/me/sw.js';
  const SCOPE = '/me';
  const STORED_ID = 'mfaProxyPushSubscriptionId';
  const CSRF = { 'X-Requested-With': 'mfa-proxy' };

  function supported() {
    return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  }

  function bytes(base64url) {
    const b64 = base64url.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((base64url.length + 3) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }

  function sameKey(buffer, base64url) {
    if (!buffer) return false;
    const a = new Uint8Array(buffer);
    const b = bytes(base64url);
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }

  async function problem(res) {
    try {
      const body = await res.json();
      return new Error(body.detail || body.title || 'HTTP ' + res.status);
    } catch (_) {
      return new Error('HTTP ' + res.status);
    }
  }

  async function currentSubscription() {
    const reg = await navigator.serviceWorker.getRegistration(SCOPE);
    return reg ? reg.pushManager.getSubscription() : null;
  }

  /** 'unsupported' | 'denied' | 'enabled' | 'disabled' */
  async function state() {
    if (!supported()) return 'unsupported';
    if (Notification.permission === 'denied') return 'denied';
    return (await currentSubscription()) && localStorage.getItem(STORED_ID) ? 'enabled' : 'disabled';
  }

  async function enable() {
    if (!supported()) throw new Error('This browser cannot receive Web Push notifications.');
    if ((await Notification.requestPermission()) !== 'granted') throw new Error('Notifications were not allowed.');
    const reg = await navigator.serviceWorker.register(SW_URL, { scope: SCOPE });
    await navigator.serviceWorker.ready;
    const keyRes = await fetch('/v1/push/vapid-public-key', { credentials: 'same-origin' });
    if (!keyRes.ok) throw await problem(keyRes);
    const { publicKey } = await keyRes.json();
    let sub = await reg.pushManager.getSubscription();
    // A subscription made under another server key (the key was rotated) cannot receive our pushes.
    if (sub && !sameKey(sub.options.applicationServerKey, publicKey)) {
      await sub.unsubscribe();
      sub = null;
    }
    if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytes(publicKey) });
    const json = sub.toJSON();
    const res = await fetch('/v1/me/push-subscriptions', {
      method: 'POST',
      credentials: 'same-origin',
      headers: Object.assign({ 'Content-Type': 'application/json' }, CSRF),
      body: JSON.stringify({ endpoint: json.endpoint, keys: json.keys }),
    });
    if (!res.ok) throw await problem(res);
    const { id } = await res.json();
    localStorage.setItem(STORED_ID, id);
    return id;
  }

  async function disable() {
    const id = localStorage.getItem(STORED_ID);
    if (id) {
      const res = await fetch('/v1/me/push-subscriptions/' + encodeURIComponent(id), { method: 'DELETE', credentials: 'same-origin', headers: CSRF });
      if (!res.ok && res.status !== 404) throw await problem(res);
      localStorage.removeItem(STORED_ID);
    }
    const sub = await currentSubscription();
    if (sub) await sub.unsubscribe();
  }

  window.mfaProxyPush = { supported, state, enable, disable };

  const LABEL = { unsupported: 'Push notifications are not available in this browser', denied: 'Notifications are blocked for this site', enabled: 'Turn off push notifications', disabled: 'Turn on push notifications' };
  function wire(button) {
    const show = async () => {
      const s = await state();
      button.textContent = LABEL[s];
      button.disabled = s === 'unsupported' || s === 'denied';
      button.dataset.state = s;
    };
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        if (button.dataset.state === 'enabled') await disable();
        else await enable();
      } catch (err) {
        button.title = err && err.message ? err.message : String(err);
      }
      await show();
    });
    show();
  }
  document.querySelectorAll('button[data-mpx-push]').forEach(wire);
})();
