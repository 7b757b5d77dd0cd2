import { request as httpRequest, type Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import { resolvePublicAddress } from '../../common/net/ssrf.js';

export interface OutboundResponse {
  status: number;
  body: string;
}

/**
 * One outbound POST to a URL someone configured (webhook, upstream token endpoint, push service): the host is
 * resolved and checked, the connection goes to the checked address, no redirects are followed,
 * time and response size are bounded; `signal` aborts it (shutdown).
 *
 * `agents` (keep-alive) lets the caller reuse connections: a new connection still goes to the
 * address checked for the request that opens it, and a reused one to the address checked when it
 * was opened, so no connection ever reaches an address the check refused. Without it, one
 * connection per request.
 */
export async function postOutbound(
  url: URL,
  body: string | Buffer,
  headers: Record<string, string>,
  opts: { timeoutMs: number; allowPrivate: boolean; maxBytes?: number; signal?: AbortSignal; agents?: { http: HttpAgent; https: HttpsAgent } },
): Promise<OutboundResponse> {
  const { address, family } = await resolvePublicAddress(url, opts.allowPrivate);
  const https = url.protocol === 'https:';
  const request = https ? httpsRequest : httpRequest;
  const max = opts.maxBytes ?? 64 * 1024;
  return new Promise<OutboundResponse>((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        agent: opts.agents ? (https ? opts.agents.https : opts.agents.http) : false,
        timeout: opts.timeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
        lookup: (_host, _o, cb) => (cb as (e: null, a: string, f: number) => void)(null, address, family),
      },
      (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < max) text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text.slice(0, max) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}
