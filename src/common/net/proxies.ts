import proxyAddr from '@fastify/proxy-addr';
import ipaddr from 'ipaddr.js';
import { isIP } from 'node:net';

/**
 * TRUST_PROXY: which peers are proxies whose X-Forwarded-For names the client, and what of it is
 * an address. Entries are parsed by the library Fastify matches them with (@fastify/proxy-addr on
 * ipaddr.js), so what configuration checks is what requests meet.
 */

/** proxy-addr's names for private ranges. */
const RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);
/** The widest range an entry may name: a proxy list is a few addresses, never a share of the Internet. */
const MIN_PREFIX = { ipv4: 8, ipv6: 16 } as const;

const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const BRACKETED_IPV6 = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/;

/**
 * The longest entry that can be an address: `[0000:0000:0000:0000:0000:0000:255.255.255.255]:65535`
 * (Node's isIP takes no longer spelling). Should a later Node take longer ones, they would count as
 * the proxy itself: safe, never a client choosing its key.
 */
const MAX_ADDRESS_ENTRY = 53;
/** How many entries' results are kept (they are X-Forwarded-For text, the client's to write: emptied when full). */
const REMEMBERED_ENTRIES = 10_000;

/**
 * `compute` remembered per entry: behind a load balancer the same few addresses (the proxies', the
 * busiest clients') come with every request, and parsing one costs microseconds (ipaddr.js).
 */
function remembered<T>(compute: (entry: string) => T): (entry: string) => T {
  const known = new Map<string, T>();
  return (entry) => {
    let value = known.get(entry);
    if (value === undefined) {
      value = compute(entry);
      if (known.size >= REMEMBERED_ENTRIES) known.clear();
      known.set(entry, value);
    }
    return value;
  };
}

/** An IP address as both Node and ipaddr.js (what proxy-addr parses with) read it, without a zone id (`fe80::1%<any text>` passes isIP). */
function plainAddress(text: string): boolean {
  return isIP(text) !== 0 && !text.includes('%') && ipaddr.isValid(text);
}

/**
 * A forwarded entry as an address, canonical (IPv4-mapped IPv6 as IPv4, lower case, shortest
 * form): bare, or with the port some proxies append (`a.b.c.d:port`, `[v6]:port`). Anything else
 * is not one, a zone id included.
 */
export function forwardedAddress(entry: string): string | null {
  return entry.length > MAX_ADDRESS_ENTRY ? null : canonicalAddress(entry);
}

const canonicalAddress = remembered((entry: string): string | null => {
  const address = IPV4_WITH_PORT.exec(entry)?.[1] ?? BRACKETED_IPV6.exec(entry)?.[1] ?? entry;
  return plainAddress(address) ? ipaddr.process(address).toString() : null;
});

/** Why `entry` cannot be a TRUST_PROXY entry, or null when it can. */
export function trustedProxyProblem(entry: string): string | null {
  if (RANGE_NAMES.has(entry)) return null;
  const slash = entry.lastIndexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  if (!plainAddress(address)) return `"${entry}" is not an address, an address/prefix, loopback, linklocal or uniquelocal`;
  const ip = ipaddr.parse(address);
  const max = ip.kind() === 'ipv4' ? 32 : 128;
  const prefixText = slash === -1 ? String(max) : entry.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 1 && prefix <= max)) return `"${entry}": the prefix must be a number from 1 to ${max}`;
  // An IPv4-mapped range (as proxy-addr reads it: ::a.b.c.d is mapped too) of /96 or longer holds IPv4 addresses.
  const [family, span] = ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96 ? (['ipv4', prefix - 96] as const) : ([ip.kind(), prefix] as const);
  if (span < MIN_PREFIX[family]) return `"${entry}" holds more than a /${MIN_PREFIX[family]} of ${family === 'ipv4' ? 'IPv4' : 'IPv6'} addresses: list the proxies, not their clients`;
  try {
    proxyAddr.compile([entry]);
  } catch {
    return `"${entry}" is not an address, an address/prefix, loopback, linklocal or uniquelocal`;
  }
  return null;
}

/**
 * Fastify's trustProxy for TRUST_PROXY: a hop is a proxy when its entry is an address (ports
 * dropped, as for the client) in the list. An entry that is not an address ends the walk there.
 * A list's answer does not depend on the hop (proxy-addr's compiled lists ignore it), so it is
 * remembered per entry: the proxy's own address is asked about on every request.
 */
export function proxyTrust(entries: string[]): (address: string, hop: number) => boolean {
  const trusted = proxyAddr.compile(entries);
  const isProxy = remembered((entry: string): boolean => {
    const a = forwardedAddress(entry);
    return a !== null && trusted(a, 0);
  });
  // The peer's address is undefined once it has reset the connection: not a proxy.
  return (address) => typeof address === 'string' && address.length <= MAX_ADDRESS_ENTRY && isProxy(address);
}
