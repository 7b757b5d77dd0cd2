import { generate } from 'otplib';
import { describe, expect, it } from 'vitest';

/**
 * RFC 6238 Appendix B test vectors (SHA-1, 8 digits, seed "12345678901234567890"):
 * the library we rely on must produce exactly these.
 */
const SEED = new TextEncoder().encode('12345678901234567890');
const VECTORS: [number, string][] = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

describe('TOTP (otplib) against RFC 6238 Appendix B', () => {
  for (const [time, expected] of VECTORS) {
    it(`T=${time} → ${expected}`, async () => {
      expect(await generate({ secret: SEED, epoch: time, digits: 8, period: 30, algorithm: 'sha1' })).toBe(expected);
    });
  }
});
