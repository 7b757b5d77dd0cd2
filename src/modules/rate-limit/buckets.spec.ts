import { describe, expect, it } from 'vitest';
import { loginChallengesKey, loginVerifyKey, oauthTokenFailuresKey } from './buckets.js';

describe('per-source keys of the unauthenticated login buckets', () => {
  it('an IPv6 source is keyed by its /64: every address of one prefix shares one bucket, whatever its spelling', () => {
    const key = loginChallengesKey('2001:db8:1:2::1');
    for (const ip of ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0db8:0001:0002:0000:0000:0000:0001', '2001:DB8:1:2:abcd::', '2001:db8:1:2:1:2:3:4', '2001:db8:1:2::1.2.3.4']) {
      expect(loginChallengesKey(ip), ip).toBe(key);
    }
    expect(key).toBe('ip:2001:db8:1:2::/64');
    expect(loginVerifyKey('2001:db8:1:2:dead:beef::1')).toBe(key);
  });

  it('another /64 is another bucket', () => {
    const key = loginChallengesKey('2001:db8:1:2::1');
    for (const ip of ['2001:db8:1:3::1', '2001:db8:2:2::1', '2001:db9:1:2::1', '::1', '::']) expect(loginChallengesKey(ip), ip).not.toBe(key);
    expect(loginChallengesKey('::1')).toBe('ip:0:0:0:0::/64');
  });

  it('IPv4 addresses (and IPv4-mapped IPv6) are keyed by the address; anything else as given, capped', () => {
    expect(loginChallengesKey('203.0.113.7')).toBe('ip:203.0.113.7');
    expect(loginChallengesKey('::ffff:203.0.113.7')).toBe('ip:203.0.113.7');
    for (const ip of ['0:0:0:0:0:ffff:203.0.113.7', '::ffff:cb00:7107', '::FFFF:CB00:7107', '0:0:0:0:0:FFFF:cb00:7107', '::0:ffff:203.0.113.7']) expect(loginChallengesKey(ip), ip).toBe('ip:203.0.113.7');
    expect(loginChallengesKey('::fffe:cb00:7107')).toBe('ip:0:0:0:0::/64');
    // A zone id is not part of the address.
    expect(loginChallengesKey('::ffff:203.0.113.7%x')).toBe('ip:203.0.113.7');
    expect(loginChallengesKey('2001:db8:1:2::1%eth0')).toBe('ip:2001:db8:1:2::/64');
    expect(loginChallengesKey('203.0.113.8')).not.toBe(loginChallengesKey('203.0.113.7'));
    expect(loginChallengesKey('x'.repeat(100))).toBe(`ip:${'x'.repeat(64)}`);
  });
});

describe('per-source key of the /oauth/token failure budget', () => {
  it('is the source as the login buckets key it (an IPv6 /64, an IPv4 address), then the claimed client', () => {
    const key = oauthTokenFailuresKey('agt_victim', '2001:db8:1:2::1');
    expect(key).toBe('ip:2001:db8:1:2::/64:client:agt_victim');
    for (const ip of ['2001:db8:1:2::2', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0DB8:1:2:0:0:0:1']) expect(oauthTokenFailuresKey('agt_victim', ip), ip).toBe(key);
    expect(oauthTokenFailuresKey('agt_victim', '2001:db8:1:3::1')).not.toBe(key);
    expect(oauthTokenFailuresKey('agt_other', '2001:db8:1:2::1')).not.toBe(key);
    expect(oauthTokenFailuresKey('agt_victim', '::ffff:203.0.113.7')).toBe('ip:203.0.113.7:client:agt_victim');
    expect(oauthTokenFailuresKey('agt_victim', '203.0.113.8')).not.toBe(oauthTokenFailuresKey('agt_victim', '203.0.113.7'));
  });
});
