import { createECDH } from 'node:crypto';
import { webhookUrlProblem } from '../../common/net/ssrf.js';

/** Longest endpoint accepted (real ones are well under 1 KiB). */
export const ENDPOINT_MAX = 2048;

/**
 * Why a push endpoint is refused (registration and again at delivery), or null. The push service
 * is someone else's server reached with our VAPID signature: https only (RFC 8030 §8: the push
 * protocol runs over TLS) unless WEBHOOK_ALLOW_PRIVATE (development), no credentials, and the
 * webhooks' SSRF rules (no loopback, private or link-local literal); the name is resolved and
 * checked again at every connection (postOutbound).
 */
export function pushEndpointProblem(raw: string, allowPrivate: boolean): string | null {
  if (raw.length > ENDPOINT_MAX) return `endpoint must be at most ${ENDPOINT_MAX} characters`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'endpoint is not a URL';
  }
  if (url.protocol !== 'https:' && !(allowPrivate && url.protocol === 'http:')) return 'endpoint must be an https URL';
  if (url.hash) return 'endpoint must not carry a fragment';
  const problem = webhookUrlProblem(raw, allowPrivate);
  return problem ? problem.replace(/^webhookUrl/, 'endpoint') : null;
}

/** base64url as the Push API's `toJSON()` gives it (RFC 4648 §5); trailing `=` padding tolerated. */
function base64urlOrNull(value: string, maxChars: number): Buffer | null {
  if (value.length > maxChars || !/^[A-Za-z0-9_-]+={0,2}$/.test(value)) return null;
  return Buffer.from(value.replace(/=+$/, ''), 'base64url');
}

/**
 * The subscription's keys (RFC 8291 §2, §3.1): `p256dh` is the user agent's P-256 public key as an
 * uncompressed point (65 bytes, on the curve), `auth` its 16-byte authentication secret. Returns
 * them normalised (unpadded base64url), or why they are refused.
 */
export function pushKeysOrProblem(keys: { p256dh: string; auth: string }): { p256dh: string; auth: string } | string {
  const p256dh = base64urlOrNull(keys.p256dh, 100);
  if (!p256dh || p256dh.length !== 65 || p256dh[0] !== 0x04) return 'keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)';
  try {
    // Rejects a point that is not on the curve (an invalid-curve key would leak our ephemeral secret's use).
    const probe = createECDH('prime256v1');
    probe.generateKeys();
    probe.computeSecret(p256dh);
  } catch {
    return 'keys.p256dh is not a point on P-256';
  }
  const auth = base64urlOrNull(keys.auth, 40);
  if (!auth || auth.length !== 16) return 'keys.auth must be 16 bytes, base64url';
  return { p256dh: p256dh.toString('base64url'), auth: auth.toString('base64url') };
}

/** The dashboard page that opens this step-up's approval (never the approval link's secret). */
export const dashboardUrl = (publicUrl: string, stepUpId: string) => `${publicUrl}/me?stepUp=${encodeURIComponent(stepUpId)}`;
