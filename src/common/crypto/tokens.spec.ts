import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashSecret, randomToken, secretMatchesHash, sha256, TOKEN_PREFIX } from './tokens.js';

describe('secret hashes', () => {
  it('hashSecret and sha256 are SHA-256 (base64url text, raw bytes), as stored hashes were written', () => {
    const secret = randomToken(TOKEN_PREFIX.agentSecret);
    expect(hashSecret(secret)).toBe(createHash('sha256').update(secret, 'utf8').digest('base64url'));
    expect(hashSecret('é✓')).toBe(createHash('sha256').update('é✓', 'utf8').digest('base64url'));
    expect(sha256('é✓').equals(createHash('sha256').update('é✓').digest())).toBe(true);
    expect(sha256(Buffer.from([0, 255])).equals(createHash('sha256').update(Buffer.from([0, 255])).digest())).toBe(true);
  });

  it('secretMatchesHash accepts the secret and refuses any other, a changed character, and a malformed stored hash', () => {
    const secret = randomToken(TOKEN_PREFIX.appKey);
    const stored = hashSecret(secret);
    expect(secretMatchesHash(secret, stored)).toBe(true);
    expect(secretMatchesHash(randomToken(TOKEN_PREFIX.appKey), stored)).toBe(false);
    expect(secretMatchesHash(secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'), stored)).toBe(false);
    expect(secretMatchesHash(secret, stored.slice(0, -1))).toBe(false);
    expect(secretMatchesHash(secret, '')).toBe(false);
    expect(secretMatchesHash('', hashSecret(''))).toBe(true);
  });
});
