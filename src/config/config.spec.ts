import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type BootNotice } from './config.js';

const key = randomBytes(32).toString('base64');

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
    const ok = loadConfig({ NODE_ENV: 'production', MASTER_KEY: key, PUBLIC_URL: 'https://mfa.example/', ADMIN_TOKEN: 'x'.repeat(32) });
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
      expect(() => loadConfig({ MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), ...env })).toThrow(ConfigError);
      expect(() => loadConfig({ MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), ...env })).toThrow(message);
    }
  });

  it('never puts a secret into an error message', () => {
    try {
      loadConfig({ MASTER_KEY: 'c2VjcmV0LXZhbHVl', ADMIN_TOKEN: 'x'.repeat(32) });
      expect.unreachable();
    } catch (err) {
      expect(String(err)).not.toContain('c2VjcmV0LXZhbHVl');
    }
  });

  it('reads postgres and redis URLs', () => {
    const sut = loadConfig({ MASTER_KEY: key, ADMIN_TOKEN: 'x'.repeat(32), DATABASE_URL: 'postgres://u@h/db', REDIS_URL: 'redis://127.0.0.1:6379', PUBLIC_URL: 'https://auth.acme.example:8443' });
    expect(sut.database).toEqual({ type: 'postgres', url: 'postgres://u@h/db' });
    expect(sut.redis?.url).toBe('redis://127.0.0.1:6379');
    expect(sut.rpId).toBe('auth.acme.example');
  });
});
