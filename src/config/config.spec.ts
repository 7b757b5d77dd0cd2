import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import webpush from 'web-push';
import { ConfigError, loadConfig, type BootNotice } from './config.js';

const key = randomBytes(32).toString('base64');
/** Where the dev-mode cases may write their generated files (VAPID keys): never the checkout's ./data. */
const scratch = mkdtempSync(join(tmpdir(), 'mpx-config-'));

describe(loadConfig.name, () => {
  it('works with no variables at all: generates a master key and an admin token under DATA_DIR, mode 0600', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpx-config-'));
    const notices: BootNotice[] = [];
    const sut = loadConfig({ DATA_DIR: dir }, notices);
    expect(sut.port).toBe(3000);
    expect(sut.publicUrl).toBe('http://localhost:3000');
    expect(sut.rpId).toBe('localhost');
    expect(sut.database).toEqual({ type: 'sqlite', path: expect.stringMatching(/data\/mfa-proxy\.sqlite$/) });
    expect(sut.redis).toBeUndefined();
    expect(sut.webhookAllowPrivate).toBe(true);
    expect(statSync(join(dir, 'master.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'admin.token')).mode & 0o777).toBe(0o600);
    const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    expect(notices.some((n) => n.level === 'warn' && n.message.includes('MASTER_KEY'))).toBe(true);
    expect(notices.filter((n) => n.message.includes(token))).toHaveLength(1);

    // Second start: same key, token not printed again.
    const again: BootNotice[] = [];
    const second = loadConfig({ DATA_DIR: dir }, again);
    expect(second.masterKey.equals(sut.masterKey)).toBe(true);
    expect(again.some((n) => n.message.includes(token))).toBe(false);
  });

  it('refuses production without MASTER_KEY or PUBLIC_URL', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', PUBLIC_URL: 'https://mfa.example', ADMIN_TOKEN: 'x'.repeat(32) })).toThrow(/MASTER_KEY/);
    expect(() => loadConfig({ NODE_ENV: 'production', MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32) })).toThrow(/PUBLIC_URL/);
    const vapid = webpush.generateVAPIDKeys();
    const ok = loadConfig({ NODE_ENV: 'production', MASTER_KEY: key, PUBLIC_URL: 'https://mfa.example/', ADMIN_TOKEN: 'x'.repeat(32), VAPID_PUBLIC_KEY: vapid.publicKey, VAPID_PRIVATE_KEY: vapid.privateKey, VAPID_SUBJECT: 'mailto:ops@mfa.example' });
    expect(ok.publicUrl).toBe('https://mfa.example');
    expect(ok.webhookAllowPrivate).toBe(false);
  });

  it('names the bad variable', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: 'eighty' }, /PORT/],
      [{ MASTER_KEY: 'c2hvcnQ=' }, /MASTER_KEY: must be base64 of exactly 32 bytes/],
      [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
      [{ PUBLIC_URL: 'not a url' }, /PUBLIC_URL/],
      [{ REDIS_URL: 'http://x' }, /REDIS_URL/],
      [{ WEBHOOK_ALLOW_PRIVATE: 'maybe' }, /WEBHOOK_ALLOW_PRIVATE/],
      [{ ADMIN_TOKEN: 'short' }, /ADMIN_TOKEN/],
    ];
    for (const [env, message] of cases) {
      expect(() => loadConfig({ MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), DATA_DIR: scratch, ...env })).toThrow(ConfigError);
      expect(() => loadConfig({ MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), DATA_DIR: scratch, ...env })).toThrow(message);
    }
  });

  it('never puts a secret into an error message', () => {
    try {
      loadConfig({ MASTER_KEY: 'c2VjcmV0LXZhbHVl', ADMIN_TOKEN: 'x'.repeat(32), DATA_DIR: scratch });
      expect.unreachable();
    } catch (err) {
      expect(String(err)).not.toContain('c2VjcmV0LXZhbHVl');
    }
  });

  it('reads postgres and redis URLs', () => {
    const sut = loadConfig({ MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), DATA_DIR: scratch, DATABASE_URL: 'postgres://u@h/db', REDIS_URL: 'redis://127.0.0.1:6379', PUBLIC_URL: 'https://auth.acme.example:8443' });
    expect(sut.database).toEqual({ type: 'postgres', url: 'postgres://u@h/db', poolMax: 20, poolTimeoutMs: 10_000 });
    expect(sut.redis).toEqual({ url: 'redis://127.0.0.1:6379', keyPrefix: 'mpx:', commandTimeoutMs: 2_000 });
    expect(sut.rpId).toBe('auth.acme.example');
  });

  it('bounds a Redis command by REDIS_COMMAND_TIMEOUT_MS (500..60000, default 2000), and refuses anything else', () => {
    const base = { MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), DATA_DIR: scratch, REDIS_URL: 'redis://127.0.0.1:6379' };
    expect(loadConfig({ ...base, REDIS_COMMAND_TIMEOUT_MS: '750' }).redis?.commandTimeoutMs).toBe(750);
    expect(loadConfig({ ...base, REDIS_COMMAND_TIMEOUT_MS: '' }).redis?.commandTimeoutMs).toBe(2_000); // empty is unset, as everywhere
    for (const bad of ['0', '499', '60001', '1.5', 'soon']) expect(() => loadConfig({ ...base, REDIS_COMMAND_TIMEOUT_MS: bad }), bad).toThrow(/REDIS_COMMAND_TIMEOUT_MS/);
  });

  it('sizes the PostgreSQL pool from DATABASE_POOL_MAX (1..1000) and its wait from DATABASE_POOL_TIMEOUT_MS (100..600000), and refuses anything else', () => {
    const base = { MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), DATA_DIR: scratch, DATABASE_URL: 'postgres://u@h/db' };
    expect(loadConfig({ ...base, DATABASE_POOL_MAX: '5', DATABASE_POOL_TIMEOUT_MS: '2500' }).database).toEqual({ type: 'postgres', url: 'postgres://u@h/db', poolMax: 5, poolTimeoutMs: 2500 });
    for (const bad of ['0', '1001', '2.5', 'many']) expect(() => loadConfig({ ...base, DATABASE_POOL_MAX: bad })).toThrow(/DATABASE_POOL_MAX/);
    // 0 would be node-pg's "wait forever".
    for (const bad of ['0', '99', '600001', 'soon']) expect(() => loadConfig({ ...base, DATABASE_POOL_TIMEOUT_MS: bad })).toThrow(/DATABASE_POOL_TIMEOUT_MS/);
  });

  describe('VAPID (Web Push)', () => {
    const pair = webpush.generateVAPIDKeys();
    const prod = { NODE_ENV: 'production', MASTER_KEY: key, PUBLIC_URL: 'https://mfa.example', ADMIN_TOKEN: 'x'.repeat(32) };

    it('generates a key pair into DATA_DIR/vapid.json (mode 0600) with a warning, and keeps it', () => {
      const dir = mkdtempSync(join(tmpdir(), 'mpx-config-'));
      const notices: BootNotice[] = [];
      const sut = loadConfig({ DATA_DIR: dir, MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32) }, notices);
      expect(statSync(join(dir, 'vapid.json')).mode & 0o777).toBe(0o600);
      expect(Buffer.from(sut.vapid.publicKey, 'base64url')).toHaveLength(65);
      expect(Buffer.from(sut.vapid.privateKey, 'base64url')).toHaveLength(32);
      expect(sut.vapid.subject).toBe('mailto:mfa-proxy@localhost');
      expect(notices.some((n) => n.level === 'warn' && n.message.includes('VAPID_PUBLIC_KEY'))).toBe(true);
      expect(notices.some((n) => n.message.includes(sut.vapid.privateKey))).toBe(false);
      expect(loadConfig({ DATA_DIR: dir, MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32) }).vapid).toEqual(sut.vapid);
    });

    it('takes the keys and subject from the environment', () => {
      const sut = loadConfig({ ...prod, VAPID_PUBLIC_KEY: pair.publicKey, VAPID_PRIVATE_KEY: pair.privateKey, VAPID_SUBJECT: 'mailto:ops@mfa.example' });
      expect(sut.vapid).toEqual({ publicKey: pair.publicKey, privateKey: pair.privateKey, subject: 'mailto:ops@mfa.example' });
    });

    it('refuses production without each of VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY and VAPID_SUBJECT, naming it', () => {
      const all = { VAPID_PUBLIC_KEY: pair.publicKey, VAPID_PRIVATE_KEY: pair.privateKey, VAPID_SUBJECT: 'https://mfa.example' };
      for (const name of Object.keys(all) as (keyof typeof all)[]) {
        const env: Record<string, string> = { ...prod, ...all };
        delete env[name];
        expect(() => loadConfig(env)).toThrow(new RegExp(`NODE_ENV=production requires ${name}`));
      }
    });

    it('names a bad, lone or mismatched VAPID variable, never printing the private key', () => {
      const other = webpush.generateVAPIDKeys();
      const cases: [Record<string, string>, RegExp][] = [
        [{ VAPID_PUBLIC_KEY: 'AAAA', VAPID_PRIVATE_KEY: pair.privateKey }, /VAPID_PUBLIC_KEY: must be base64url of an uncompressed P-256 point/],
        [{ VAPID_PUBLIC_KEY: pair.publicKey, VAPID_PRIVATE_KEY: 'AAAA' }, /VAPID_PRIVATE_KEY: must be base64url of a 32-byte/],
        [{ VAPID_PUBLIC_KEY: pair.publicKey }, /VAPID_PRIVATE_KEY must be set together with VAPID_PUBLIC_KEY/],
        [{ VAPID_PRIVATE_KEY: pair.privateKey }, /VAPID_PUBLIC_KEY must be set together with VAPID_PRIVATE_KEY/],
        [{ VAPID_PUBLIC_KEY: other.publicKey, VAPID_PRIVATE_KEY: pair.privateKey }, /VAPID_PUBLIC_KEY: does not match VAPID_PRIVATE_KEY/],
        [{ VAPID_SUBJECT: 'http://mfa.example' }, /VAPID_SUBJECT: must be a mailto: address or an https: URL/],
      ];
      for (const [env, message] of cases) {
        let error: unknown;
        try {
          loadConfig({ MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), DATA_DIR: mkdtempSync(join(tmpdir(), 'mpx-config-')), ...env });
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(ConfigError);
        expect(String(error)).toMatch(message);
        expect(String(error)).not.toContain(pair.privateKey);
      }
    });
  });
});

describe('TRUST_PROXY', () => {
  const base = { DATA_DIR: scratch, MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(24) };
  const load = (value: string) => loadConfig({ ...base, TRUST_PROXY: value }).trustedProxies;

  it('takes addresses, prefixes and range names', () => {
    expect(load(' 10.0.0.1 , 10.1.0.0/16,fd12:3456::/32, loopback,uniquelocal ')).toEqual(['10.0.0.1', '10.1.0.0/16', 'fd12:3456::/32', 'loopback', 'uniquelocal']);
    expect(load('::ffff:10.0.0.0/104,::10.0.0.0/104,2001:db8::/32,10.0.0.0/8')).toEqual(['::ffff:10.0.0.0/104', '::10.0.0.0/104', '2001:db8::/32', '10.0.0.0/8']);
    expect(loadConfig(base).trustedProxies).toEqual([]);
  });

  it.each([
    ['true', /not an address/],
    ['*', /not an address/],
    ['example.com', /not an address/],
    ['fe80::1%eth0', /not an address/],
    ['10.0.0.0/8/1', /not an address/],
    ['10.0.0.0/33', /prefix must be a number from 1 to 32/],
    ['10.0.0.0/x', /prefix must be a number from 1 to 32/],
    ['10.0.0.0/255.0.0.0', /prefix must be a number from 1 to 32/],
    ['0.0.0.0/0', /prefix must be a number from 1 to 32/],
    ['::/0', /prefix must be a number from 1 to 128/],
    // Every IPv4 address, however it is spelled, alone or by halves; then more than a /16 of IPv6.
    ['0.0.0.0/1,128.0.0.0/1', /holds more than a \/8 of IPv4/],
    ['10.0.0.0/7', /holds more than a \/8 of IPv4/],
    ['::ffff:0:0/96', /holds more than a \/8 of IPv4/],
    ['::ffff:0.0.0.0/96', /holds more than a \/8 of IPv4/],
    ['::0.0.0.0/96', /holds more than a \/8 of IPv4/],
    ['::0.0.0.0/97,::128.0.0.0/97', /holds more than a \/8 of IPv4/],
    ['::ffff:10.0.0.0/8', /holds more than a \/16 of IPv6/],
    ['2000::/3', /holds more than a \/16 of IPv6/],
    ['fd00::/8', /holds more than a \/16 of IPv6/],
    [' , ', /at least one/],
  ])('refuses %j', (value, message) => {
    expect(() => load(value)).toThrow(ConfigError);
    expect(() => load(value)).toThrow(message);
  });
});
