import { generateKeyPairSync, sign } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isPrivateAddress, resolveHost, resolvePublicAddress, webhookUrlProblem } from './ssrf.js';

/**
 * A DNS server on a local UDP port (RFC 1035 §4.1): A and AAAA answers from `records`, NXDOMAIN
 * for other names; `silent` never answers (a nameserver that hangs).
 */
async function dnsServer(records: Record<string, { a?: string[]; aaaa?: string[] }>, silent = false): Promise<{ socket: Socket; resolver: Resolver }> {
  const socket = createSocket('udp4');
  socket.on('message', (q, peer) => {
    if (silent) return;
    let i = 12;
    const labels: string[] = [];
    while (q[i] !== 0) {
      labels.push(q.subarray(i + 1, i + 1 + q[i]).toString('ascii'));
      i += q[i] + 1;
    }
    const question = q.subarray(12, i + 5);
    const type = q.readUInt16BE(i + 1);
    const entry = records[labels.join('.').toLowerCase()];
    const answers = !entry ? [] : type === 1 ? (entry.a ?? []) : type === 28 ? (entry.aaaa ?? []) : [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(q.readUInt16BE(0), 0);
    header.writeUInt16BE(entry ? 0x8180 : 0x8183, 2); // response, recursion desired + available; rcode 3 = NXDOMAIN
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const rrs = answers.map((address) => {
      const data = type === 1 ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address);
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      rr.writeUInt16BE(type, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(data.length, 10);
      return Buffer.concat([rr, data]);
    });
    socket.send(Buffer.concat([header, question, ...rrs]), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const resolver = new Resolver({ timeout: 300, tries: 1 });
  resolver.setServers([`127.0.0.1:${(socket.address() as AddressInfo).port}`]);
  sockets.push(socket);
  return { socket, resolver };
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail = ''] = address.split('::');
  const part = (s: string) => (s ? s.split(':') : []);
  const groups = [...part(head), ...Array(8 - part(head).length - part(tail).length).fill('0'), ...part(tail)];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

describe('webhook SSRF guard', () => {
  it('classifies addresses', () => {
    for (const ip of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::']) {
      expect(isPrivateAddress(ip), ip).toBe(true);
    }
    // Forms of IPv6 that carry an IPv4 address or reach one (IPv4-compatible, NAT64 local use, 6to4, Teredo), and site-local.
    for (const ip of ['::7f00:1', '::a00:1', '64:ff9b:1::a00:1', '2002:a00:1::1', '2001:0:4136:e378:8000:63bf:3fff:fdd2', 'fec0::1', '100::1']) {
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

  it('resolves names by DNS queries to the configured servers: IPv4 first, every answer checked', async () => {
    const { resolver } = await dnsServer({
      'hooks.test': { a: ['93.184.216.34'], aaaa: ['2606:4700:4700::1111'] },
      'v6only.test': { aaaa: ['2606:4700:4700::1111'] },
      'rebind.test': { a: ['93.184.216.34', '127.0.0.1'] },
      'meta.test': { aaaa: ['fe80::1'] },
    });
    expect(await resolveHost('hooks.test', resolver)).toEqual([{ address: '93.184.216.34', family: 4 }, { address: '2606:4700:4700::1111', family: 6 }]);
    await expect(resolvePublicAddress(new URL('https://HOOKS.test./x'), false, resolver)).resolves.toEqual({ address: '93.184.216.34', family: 4 });
    await expect(resolvePublicAddress(new URL('https://v6only.test/x'), false, resolver)).resolves.toEqual({ address: '2606:4700:4700::1111', family: 6 });
    // One private answer among public ones is enough to refuse; so is a private IPv6 answer.
    await expect(resolvePublicAddress(new URL('https://rebind.test/x'), false, resolver)).rejects.toThrow(/private/);
    await expect(resolvePublicAddress(new URL('https://meta.test/x'), false, resolver)).rejects.toThrow(/private/);
    await expect(resolvePublicAddress(new URL('https://rebind.test/x'), true, resolver)).resolves.toEqual({ address: '93.184.216.34', family: 4 });
    await expect(resolvePublicAddress(new URL('https://nowhere.test/x'), true, resolver)).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('waits on a nameserver that never answers without holding a thread of the pool that signs tokens, and gives up', async () => {
    const { resolver } = await dnsServer({}, true);
    // Eight hanging resolutions: twice libuv's four threads.
    let settled = 0;
    const hanging = Array.from({ length: 8 }, (_, i) =>
      resolvePublicAddress(new URL(`https://slow${i}.test/x`), false, resolver).then(
        () => 'resolved',
        () => 'gave up',
      ).finally(() => settled++),
    );
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await Promise.all(Array.from({ length: 8 }, () => new Promise((resolve, reject) => sign('sha256', Buffer.from('x'), privateKey, (err, sig) => (err ? reject(err) : resolve(sig))))));
    expect(settled).toBe(0); // signed on the pool while every name was still unanswered
    expect(await Promise.all(hanging)).toEqual(Array(8).fill('gave up'));
  });

  it('takes localhost (and *.localhost) as loopback without asking anyone', async () => {
    const never = { resolve4: () => Promise.reject(new Error('asked')), resolve6: () => Promise.reject(new Error('asked')) };
    expect(await resolveHost('app.localhost', never)).toEqual([{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }]);
    await expect(resolvePublicAddress(new URL('http://LOCALHOST:9/x'), true, never)).resolves.toEqual({ address: '127.0.0.1', family: 4 });
    for (const url of ['http://localhost./x', 'http://localhost../x', 'http://Foo.LocalHost./x']) {
      await expect(resolvePublicAddress(new URL(url), false, never), url).rejects.toThrow(/private/);
    }
  });
});

