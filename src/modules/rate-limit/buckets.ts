import ipaddr from 'ipaddr.js';
import { isIPv4, isIPv6 } from 'node:net';
import type { ErrorCode } from '../../common/errors/error-codes.js';

/**
 * Every rate-limit bucket, its budget, and what happens when the shared store (Redis) cannot be
 * reached: pure throttles fail open (logged and counted), buckets that guard a secret fail closed.
 */
export const BUCKETS = {
  /** Every agent-authenticated request; the budget is the agent's own `rateLimitPerMinute`. */
  agentRequests: { points: 0, duration: 60, failClosed: false, code: 'rate_limited' },
  /** Step-up creation per agent: stricter than plain requests. */
  stepUpCreate: { points: 30, duration: 60, failClosed: false, code: 'rate_limited' },
  /** New pushes to one human per hour, whatever agent asks (anti push-fatigue); PUSHES_PER_USER_PER_HOUR. */
  userPushes: { points: 60, duration: 3600, failClosed: false, code: 'rate_limited' },
  /**
   * New pushes one agent may cause per hour: a third of the user's default budget, so one agent
   * (however low its privileges) cannot spend its human's whole budget and silence the others.
   */
  agentPushes: { points: 20, duration: 3600, failClosed: false, code: 'rate_limited' },
  /** Tokens issued per AUTHENTICATED client (agent id): spent only after client authentication succeeds. */
  oauthToken: { points: 60, duration: 60, failClosed: false, code: 'rate_limited' },
  /**
   * Failed client authentications at /oauth/token per (claimed client id, source IP): 20 per 5 min.
   * Spent by each failure, atomically, after the credential was checked; past the budget a failure
   * is answered 429 instead of 401. A right credential always passes, so a flood of wrong secrets
   * locks the agent out nowhere (not even behind the proxy or NAT it shares with the flood), and
   * costs it nothing of its issuance budget.
   * Fails open: client secrets are 256-bit random and assertions are signatures, so this bucket
   * caps the 401s (noise), not guessing; failing closed would stop all issuance with Redis down.
   * Every endpoint that authenticates an agent as an OAuth client spends from it (authenticateClient).
   */
  oauthTokenFailures: { points: 20, duration: 300, failClosed: false, code: 'rate_limited' },
  /** Verify per app. */
  appVerify: { points: 6000, duration: 60, failClosed: false, code: 'rate_limited' },
  /** Code/assertion attempts per approval token (guards a secret: fails closed). */
  approvalAttempts: { points: 30, duration: 60, failClosed: true, code: 'rate_limited' },
  /**
   * TOTP codes per user across all step-ups: 20 per 15 min, well under NIST SP 800-63B's
   * 100 consecutive failures, so an agent cannot brute-force codes nor lock its human out for long.
   */
  userTotp: { points: 20, duration: 900, failClosed: true, code: 'rate_limited' },
  /** Proof attempts per sign-in link (guards a secret: fails closed); the link itself is spent after 5 failures. */
  signInAttempts: { points: 30, duration: 60, failClosed: true, code: 'rate_limited' },
  /**
   * Passkey sign-in challenges (no link, no credential yet) per source (IPv6: per /64): bounds how
   * many unauthenticated rows one source keeps outstanding (each lives 5 min): at most 30. All
   * sources together are bounded by SignInService's cap on outstanding login challenges.
   */
  loginChallenges: { points: 30, duration: 300, failClosed: false, code: 'rate_limited' },
  /** Passkey sign-in verifications per source (IPv6: per /64) (assertions are signatures: this bounds load). */
  loginVerify: { points: 30, duration: 60, failClosed: false, code: 'rate_limited' },
} as const satisfies Record<string, { points: number; duration: number; failClosed: boolean; code: ErrorCode }>;

export type Bucket = keyof typeof BUCKETS;

/* One named function per bucket key. */
export const agentRequestsKey = (agentId: string) => `agent:${agentId}`;
export const stepUpCreateKey = (agentId: string) => `agent:${agentId}`;
export const userPushesKey = (appId: string, userId: string) => `user:${appId}:${userId}`;
export const agentPushesKey = (agentId: string) => `agent:${agentId}`;
export const oauthTokenKey = (agentId: string) => `client:${agentId}`;
/**
 * Source first, as sourceKey gives it (an IPv6 source by its /64, so one host cannot mint a failure
 * budget per address; a source key never contains `:client:`), then the claimed, unauthenticated client id, capped.
 */
export const oauthTokenFailuresKey = (claimedClientId: string, ip: string) => `ip:${sourceKey(ip)}:client:${claimedClientId.slice(0, 64)}`;
export const appVerifyKey = (appId: string) => `app:${appId}`;
export const approvalAttemptsKey = (stepUpId: string) => `stp:${stepUpId}`;
export const userTotpKey = (appId: string, userId: string) => `user:${appId}:${userId}`;
export const signInAttemptsKey = (linkId: string) => `sil:${linkId}`;

/**
 * A source address as a bucket key: IPv4 (and IPv4-mapped IPv6) by the address, IPv6 by its /64,
 * the smallest prefix one subscriber gets (RFC 6177), so one host cannot mint a bucket per address.
 * Anything else as given (capped).
 */
export function sourceKey(address: string): string {
  const ip = address.replace(/%.*$/s, ''); // a zone id is not part of the address
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return ip.slice(0, 64);
  // IPv4-mapped in any spelling (::ffff:a.b.c.d, 0:0:0:0:0:ffff:c633:640a): the IPv4 address.
  const parsed = ipaddr.process(ip);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  return `${(parsed as ipaddr.IPv6).parts.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

export const loginChallengesKey = (ip: string) => `ip:${sourceKey(ip)}`;
export const loginVerifyKey = (ip: string) => `ip:${sourceKey(ip)}`;
