import { generate } from 'otplib';

/** The RFC 6238 code of a base32 secret at a given time (SHA-1, 6 digits, 30 s). */
export function totpCode(secret: string, atMs = Date.now()): Promise<string> {
  return generate({ secret, epoch: Math.floor(atMs / 1000), digits: 6, period: 30, algorithm: 'sha1' });
}
