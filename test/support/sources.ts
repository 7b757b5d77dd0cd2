import { request as httpRequest } from 'node:http';

/**
 * Requests from a chosen local address: the app listens on all IPv4 interfaces and Linux routes
 * the whole 127/8 to lo, so 127.0.0.1 and 127.0.0.2 are two real TCP sources (Fastify's `request.ip`).
 */
export interface SourcedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

export interface SourcedRequest {
  port: number;
  from: string;
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  /** Sent as is, with its Content-Length; give the Content-Type in `headers`. */
  body?: string;
}

/** One request on a fresh connection from `from`; the answer's body parsed as JSON. */
export function requestFrom({ port, from, method, path, headers = {}, body = '' }: SourcedRequest): Promise<SourcedResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, localAddress: from, method, path, agent: false, headers: { ...headers, ...(body ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The statuses of `n` calls made one after another. */
export async function statuses(n: number, call: () => Promise<SourcedResponse>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await call()).status);
  return out;
}

export const times = <T>(n: number, v: T): T[] => Array.from({ length: n }, () => v);
