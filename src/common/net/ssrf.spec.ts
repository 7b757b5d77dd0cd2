import { describe, expect, it } from 'vitest';
import { isPrivateAddress, resolvePublicAddress, webhookUrlProblem } from './ssrf.js';

describe('webhook SSRF guard', () => {
  it('classifies addresses', () => {
    for (const ip of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::']) {
      expect(isPrivateAddress(ip), ip).toBe(true);
    }
    for (const ip of ['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111']) expect(isPrivateAddress(ip), ip).toBe(false);
  });

  it('refuses private webhook URLs when private addresses are not allowed', () => {
    for (const url of ['http://127.0.0.1/hook', 'http://10.0.0.1/hook', 'http://169.254.169.254/latest/meta-data', 'http://[::1]:8080/hook', 'http://localhost/hook', 'https://user:pw@example.com/']) {
      expect(webhookUrlProblem(url, false), url).not.toBeNull();
    }
    expect(webhookUrlProblem('https://hooks.example.com/x', false)).toBeNull();
    expect(webhookUrlProblem('http://127.0.0.1/hook', true)).toBeNull();
  });

  it('refuses at delivery time a name that resolves to a private address', async () => {
    await expect(resolvePublicAddress(new URL('http://localhost:9/x'), false)).rejects.toThrow(/private/);
    await expect(resolvePublicAddress(new URL('http://127.0.0.1:9/x'), false)).rejects.toThrow(/private/);
    await expect(resolvePublicAddress(new URL('http://127.0.0.1:9/x'), true)).resolves.toEqual({ address: '127.0.0.1', family: 4 });
  });
});
