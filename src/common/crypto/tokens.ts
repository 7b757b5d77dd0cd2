import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Readable prefixes of the secrets we hand out (so a leaked one is recognisable in a scanner). */
export const TOKEN_PREFIX = {
  appKey: 'mpx_app_',
  agentSecret: 'mpx_sec_',
  enrollment: 'mpx_enr_',
  approval: 'mpx_apr_',
  webhookSecret: 'whsec_',
  admin: 'mpx_adm_',
  signIn: 'mpx_sin_',
  session: 'mpx_ses_',
} as const;

/** A random secret: the prefix and 32 random bytes, base64url. */
export function randomToken(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

/**
 * SHA-256 of a high-entropy secret, base64url. A fast hash is right for 256-bit random values
 * (nothing to brute-force); slow hashes are for human passwords, which we never store.
 */
export function hashSecret(secret: string): string {
  // One-shot hash: a fifth of createHash().update().digest()'s cost for inputs this small.
  return hash('sha256', secret, 'base64url');
}

export function sha256(data: string | Buffer): Buffer {
  return hash('sha256', data, 'buffer');
}

/** Constant-time equality of two strings (hashed first, so lengths never leak). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/**
 * Checks a presented secret against a stored hash in constant time. Both sides are SHA-256
 * digests of one length (43 characters), compared directly: only a malformed stored hash has
 * another length, and that length says nothing about the secret.
 */
export function secretMatchesHash(presented: string, storedHash: string): boolean {
  const computed = Buffer.from(hashSecret(presented));
  const stored = Buffer.from(storedHash);
  return computed.length === stored.length && timingSafeEqual(computed, stored);
}
