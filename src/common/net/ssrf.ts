import { Resolver } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Addresses a webhook must not reach unless WEBHOOK_ALLOW_PRIVATE: loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved. */
const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(net, prefix, 'ipv4');
// IPv6 that can carry or reach an IPv4 address (IPv4-compatible ::/96, NAT64 64:ff9b::/96 and the
// local-use 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32) and the old site-local fec0::/10 are refused too.
for (const [net, prefix] of [
  ['::', 96], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['64:ff9b:1::', 48],
  ['2001::', 32], ['2001:db8::', 32], ['2002::', 16], ['100::', 64],
] as const) blocked.addSubnet(net, prefix, 'ipv6');

export function isPrivateAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return blocked.check(ip, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    if (mapped) return blocked.check(mapped[1], 'ipv4');
    return blocked.check(ip, 'ipv6');
  }
  return true; // not an address: refuse
}

const hostOf = (url: URL) => url.hostname.replace(/^\[|\]$/g, '');

/** Why a webhook URL is refused at configuration time (a literal private address or localhost), or null. */
export function webhookUrlProblem(raw: string, allowPrivate: boolean): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'webhookUrl is not a URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'webhookUrl must be http(s)';
  if (url.username || url.password) return 'webhookUrl must not carry credentials';
  if (allowPrivate) return null;
  const host = hostOf(url).toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return 'webhookUrl must not point to localhost';
  if (isIP(host) && isPrivateAddress(host)) return 'webhookUrl must not point to a private, loopback or link-local address';
  return null;
}

/**
 * Outbound names are resolved by DNS queries (c-ares, answered on the event loop), not by the
 * system's getaddrinfo: that runs on libuv's thread pool (4 threads), which also signs and checks
 * every token, and a lookup cannot be cancelled. A webhook or push host whose nameserver never
 * answers would hold a pool thread for the resolver's whole timeout; four of them stopped token
 * issuance for every tenant. Queries time out at 2.5 s, with one retry (c-ares lengthens it: about
 * 6 s per silent nameserver). The servers are the system's (/etc/resolv.conf), but names are
 * asked as written: its `search` domains are not applied, /etc/hosts is not read, and `localhost`
 * is loopback (RFC 6761).
 */
const resolver = new Resolver({ timeout: 2_500, tries: 2 });

/** The addresses of a host name: IPv4 first, then IPv6. `dns` is for tests (another server). */
export async function resolveHost(host: string, dns: Pick<Resolver, 'resolve4' | 'resolve6'> = resolver): Promise<{ address: string; family: number }[]> {
  const name = host.toLowerCase().replace(/\.+$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }];
  const [v4, v6] = await Promise.allSettled([dns.resolve4(name), dns.resolve6(name)]);
  if (v4.status === 'rejected' && v6.status === 'rejected') throw v4.reason;
  return [
    ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
    ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
  ];
}

/**
 * Resolves an outbound host (webhook, upstream token endpoint, push service) at call time and returns the address to connect to. Every address
 * the name resolves to must be public (unless allowed), and the connection goes to the checked
 * address, so a rebinding DNS answer cannot switch it afterwards.
 */
export async function resolvePublicAddress(url: URL, allowPrivate: boolean, dns?: Pick<Resolver, 'resolve4' | 'resolve6'>): Promise<{ address: string; family: number }> {
  const host = hostOf(url);
  const addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await resolveHost(host, dns);
  if (addresses.length === 0) throw new Error('host does not resolve');
  if (!allowPrivate && addresses.some((a) => isPrivateAddress(a.address))) throw new Error('host resolves to a private address');
  return addresses[0];
}
