/** The service's endpoints, from RFC 8414 metadata when it answers, else the fixed paths of the HTTP contract. */
export interface Endpoints {
  issuer: string;
  token: string;
  txnAuthorization: string;
  jwks: string;
}

const cache = new Map<string, Promise<Endpoints>>();

export function trimIssuer(issuer: string): string {
  return issuer.replace(/\/+$/, '');
}

/** Reads `${issuer}/.well-known/oauth-authorization-server` once per issuer and fetch function. */
export function discover(issuer: string, fetchFn: typeof fetch): Promise<Endpoints> {
  const base = trimIssuer(issuer);
  const key = base;
  let p = cache.get(key);
  if (!p) {
    p = load(base, fetchFn);
    cache.set(key, p);
    // a failed discovery is not remembered: the next call tries again
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function load(base: string, fetchFn: typeof fetch): Promise<Endpoints> {
  const fallback: Endpoints = {
    issuer: base,
    token: `${base}/oauth/token`,
    txnAuthorization: `${base}/oauth/txn-authorization`,
    jwks: `${base}/.well-known/jwks.json`,
  };
  let meta: Record<string, unknown> = {};
  try {
    const res = await fetchFn(`${base}/.well-known/oauth-authorization-server`, { headers: { accept: 'application/json' } });
    if (res.ok) meta = (await res.json()) as Record<string, unknown>;
  } catch {
    // the fixed paths below
  }
  const str = (v: unknown, d: string) => (typeof v === 'string' && v.length ? v : d);
  return {
    issuer: str(meta.issuer, fallback.issuer),
    token: str(meta.token_endpoint, fallback.token),
    txnAuthorization: str(meta.transaction_authorization_endpoint, fallback.txnAuthorization),
    jwks: str(meta.jwks_uri, fallback.jwks),
  };
}
