// mfa-proxy dashboard service worker (served at /me/sw.js, scope /me): shows a step-up's Web Push
// (app, agent, action, binding code) and opens its approval in the dashboard on click.
'use strict';

const DASHBOARD = '/me';
// Characters a reader cannot see (format and default-ignorable code points, line/paragraph
// separators) and control characters are shown as [U+XXXX], as on the pages: an agent's text
// cannot hide or reorder what the human reads.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\u2028\u2029]/gu;
const visible = (value, max) => {
  const text = String(value == null ? '' : value).replace(INVISIBLE, (c) => '[U+' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0') + ']');
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
};

/** Only a page of this origin is ever opened (never a URL a payload names elsewhere). */
function sameOriginUrl(raw) {
  try {
    const url = new URL(raw, self.location.origin);
    if (url.origin === self.location.origin) return url.href;
  } catch (_) {
    // fall through
  }
  return new URL(DASHBOARD, self.location.origin).href;
}

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (_) {
    data = {};
  }
  // userVisibleOnly: every push shows a notification, an unknown one as a plain pointer to the dashboard.
  const known = data && data.type === 'step_up.created';
  const title = known ? visible(data.agent || 'An agent', 80) + ' asks for your approval' : 'mfa-proxy';
  const body = known
    ? visible(data.action, 200) + '\n' + visible(data.app, 80) + ' · code ' + visible(data.bindingCode, 16)
    : 'Open your dashboard to see what is pending.';
  event.waitUntil(
    self.registration.showNotification(title, {
      body,
      tag: known ? 'step-up:' + visible(data.stepUpId, 64) : 'mfa-proxy',
      renotify: true,
      requireInteraction: true,
      data: { url: sameOriginUrl(known ? data.url : DASHBOARD) },
    }),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = sameOriginUrl(event.notification.data && event.notification.data.url);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
      const open = windows.find((c) => new URL(c.url).pathname === DASHBOARD && 'focus' in c);
      if (open) {
        await open.focus();
        if ('navigate' in open) await open.navigate(url);
        return;
      }
      await self.clients.openWindow(url);
    })(),
  );
});

// The push service replaced the subscription: register the new one (the session cookie goes along).
self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil(
    (async () => {
      const old = event.oldSubscription;
      const sub = event.newSubscription || (old && (await self.registration.pushManager.subscribe(old.options)));
      if (!sub) return;
      const json = sub.toJSON();
      await fetch('/v1/me/push-subscriptions', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'mfa-proxy' },
        body: JSON.stringify({ endpoint: json.endpoint, keys: json.keys }),
      });
    })(),
  );
});
