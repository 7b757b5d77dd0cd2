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
  /** /oauth/token per client id. */
  oauthToken: { points: 60, duration: 60, failClosed: false, code: 'rate_limited' },
  /** Verify per app. */
  appVerify: { points: 6000, duration: 60, failClosed: false, code: 'rate_limited' },
  /** Code/assertion attempts per approval token (guards a secret: fails closed). */
  approvalAttempts: { points: 30, duration: 60, failClosed: true, code: 'rate_limited' },
  /**
   * TOTP codes per user across all step-ups: 20 per 15 min, well under NIST SP 800-63B's
   * 100 consecutive failures, so an agent cannot brute-force codes nor lock its human out for long.
   */
  userTotp: { points: 20, duration: 900, failClosed: true, code: 'rate_limited' },
} as const satisfies Record<string, { points: number; duration: number; failClosed: boolean; code: ErrorCode }>;

export type Bucket = keyof typeof BUCKETS;

/* One named function per bucket key. */
export const agentRequestsKey = (agentId: string) => `agent:${agentId}`;
export const stepUpCreateKey = (agentId: string) => `agent:${agentId}`;
export const userPushesKey = (appId: string, userId: string) => `user:${appId}:${userId}`;
export const oauthTokenKey = (clientId: string) => `client:${clientId.slice(0, 64)}`;
export const appVerifyKey = (appId: string) => `app:${appId}`;
export const approvalAttemptsKey = (stepUpId: string) => `stp:${stepUpId}`;
export const userTotpKey = (appId: string, userId: string) => `user:${appId}:${userId}`;
