import { describe, expect, it } from 'vitest';
import { forwardedAddress, proxyTrust } from './proxies.js';

describe('forwardedAddress', () => {
  it('takes a bare address or one with a port, in canonical form', () => {
    expect(forwardedAddress('203.0.113.7')).toBe('203.0.113.7');
    expect(forwardedAddress('203.0.113.7:51234')).toBe('203.0.113.7');
    expect(forwardedAddress('[2001:DB8:0:0::1]:443')).toBe('2001:db8::1');
    expect(forwardedAddress('[::ffff:203.0.113.7]')).toBe('203.0.113.7');
    expect(forwardedAddress('0:0:0:0:0:ffff:cb00:7107')).toBe('203.0.113.7');
    // The longest address text there is, with a port.
    expect(forwardedAddress('[0000:0000:0000:0000:0000:ffff:255.255.255.255]:65535')).toBe('255.255.255.255');
  });

  it('is null for anything else: text, zone ids, over-long entries', () => {
    for (const entry of ['unknown', '', 'fe80::1%eth0', '[fe80::1%eth0]:1', '203.0.113.7:', '203.0.113.7:123456', ' 203.0.113.7', `203.0.113.7${' '.repeat(60)}`, '1'.repeat(100)]) {
      expect(forwardedAddress(entry), JSON.stringify(entry)).toBeNull();
    }
  });

  it('answers the same for an entry asked again, and after more distinct entries than it remembers', () => {
    expect(forwardedAddress('198.51.100.1:80')).toBe('198.51.100.1');
    for (let i = 0; i < 12_000; i++) expect(forwardedAddress(`10.${(i >> 8) & 255}.${i & 255}.1:${i % 65536}`)).toBe(`10.${(i >> 8) & 255}.${i & 255}.1`);
    expect(forwardedAddress('198.51.100.1:80')).toBe('198.51.100.1');
    expect(forwardedAddress('fe80::1%eth0')).toBeNull();
  });
});

describe('proxyTrust', () => {
  it('trusts a listed address at every hop, whatever its spelling or port, and nothing else', () => {
    const trust = proxyTrust(['10.0.0.0/8', '2001:db8::7']);
    for (const hop of [0, 1, 3]) {
      expect(trust('10.1.2.3', hop)).toBe(true);
      expect(trust('10.1.2.3:8443', hop)).toBe(true);
      expect(trust('::ffff:10.1.2.3', hop)).toBe(true);
      expect(trust('[2001:DB8::7]:80', hop)).toBe(true);
      expect(trust('11.1.2.3', hop)).toBe(false);
      expect(trust('2001:db8::8', hop)).toBe(false);
      expect(trust('10.1.2.3%x', hop)).toBe(false);
      expect(trust(`10.1.2.3:${'1'.repeat(60)}`, hop)).toBe(false);
    }
    // A peer that has reset its connection has no address (socket.remoteAddress is undefined).
    expect(trust(undefined as unknown as string, 0)).toBe(false);
    // Another list remembers its own answers.
    expect(proxyTrust(['192.0.2.1'])('10.1.2.3', 0)).toBe(false);
    expect(trust('10.1.2.3', 0)).toBe(true);
  });

  it('answers alike after more distinct entries than it remembers', () => {
    const trust = proxyTrust(['10.0.0.0/8']);
    for (let i = 0; i < 12_000; i++) {
      expect(trust(`10.0.${(i >> 8) & 255}.${i & 255}`, 0)).toBe(true);
      expect(trust(`11.0.${(i >> 8) & 255}.${i & 255}`, 1)).toBe(false);
    }
  });
});
