import { createECDH, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { dashboardUrl, pushEndpointProblem, pushKeysOrProblem } from './push-endpoint.js';

describe(pushEndpointProblem.name, () => {
  it('accepts an https push service URL', () => {
    expect(pushEndpointProblem('https://fcm.googleapis.com/fcm/send/abc:def', false)).toBeNull();
    expect(pushEndpointProblem('https://updates.push.services.mozilla.com/wpush/v2/gAAAA', false)).toBeNull();
  });

  it('refuses http, private literals, credentials and fragments unless private addresses are allowed (http, loopback)', () => {
    expect(pushEndpointProblem('http://push.example.com/x', false)).toBe('endpoint must be an https URL');
    expect(pushEndpointProblem('http://127.0.0.1:9/x', true)).toBeNull();
    expect(pushEndpointProblem('https://10.1.2.3/x', false)).toBe('endpoint must not point to a private, loopback or link-local address');
    expect(pushEndpointProblem('https://[::1]/x', false)).toBe('endpoint must not point to a private, loopback or link-local address');
    expect(pushEndpointProblem('https://a.localhost/x', false)).toBe('endpoint must not point to localhost');
    expect(pushEndpointProblem('https://u:p@push.example.com/x', true)).toBe('endpoint must not carry credentials');
    expect(pushEndpointProblem('https://push.example.com/x#y', false)).toBe('endpoint must not carry a fragment');
    expect(pushEndpointProblem('ftp://push.example.com/x', true)).toBe('endpoint must be an https URL');
    expect(pushEndpointProblem(`https://push.example.com/${'a'.repeat(2048)}`, false)).toBe('endpoint must be at most 2048 characters');
  });
});

describe(pushKeysOrProblem.name, () => {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const p256dh = ecdh.getPublicKey().toString('base64url');
  const auth = randomBytes(16).toString('base64url');

  it('accepts a P-256 point and a 16-byte secret, padded or not, and normalises them', () => {
    expect(pushKeysOrProblem({ p256dh, auth })).toEqual({ p256dh, auth });
    expect(pushKeysOrProblem({ p256dh: `${p256dh}=`, auth: `${auth}==` })).toEqual({ p256dh, auth });
  });

  it('refuses a point off the curve, a compressed point, standard-base64 characters and a wrong-sized secret', () => {
    expect(pushKeysOrProblem({ p256dh: Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 7)]).toString('base64url'), auth })).toBe('keys.p256dh is not a point on P-256');
    expect(pushKeysOrProblem({ p256dh: ecdh.getPublicKey(null, 'compressed').toString('base64url'), auth })).toMatch(/^keys.p256dh must be an uncompressed/);
    expect(pushKeysOrProblem({ p256dh: `+/${p256dh.slice(2)}`, auth })).toMatch(/^keys.p256dh must be an uncompressed/);
    expect(pushKeysOrProblem({ p256dh, auth: randomBytes(12).toString('base64url') })).toBe('keys.auth must be 16 bytes, base64url');
  });
});

describe(dashboardUrl.name, () => {
  it('opens the step-up in the dashboard', () => {
    expect(dashboardUrl('https://mfa.example', 'stp_abc')).toBe('https://mfa.example/me?stepUp=stp_abc');
  });
});
