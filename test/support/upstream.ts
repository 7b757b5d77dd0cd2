import { createServer, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * How the provider answers a refresh:
 * - `ok`, `slow` (300 ms), `invalid_grant`, `error` (503);
 * - `big_scope`: a valid answer whose `scope` is `scopeBytes` long (default 100 KB), with a rotated refresh token;
 * - `huge_body`: a 2 MB answer: the rotated refresh token and access token first, then a 2 MB `scope`;
 * - `endless`: 200 with the rotated refresh token first, then a body that never ends (until closed);
 * - `custom`: the rotated refresh token is issued and `state.respond` writes the body (malformed answers).
 * Every mode that answers 200 rotates: the presented refresh token stops working at once.
 */
export type UpstreamMode = 'ok' | 'invalid_grant' | 'error' | 'slow' | 'big_scope' | 'huge_body' | 'endless' | 'custom';

/** The fields of a rotation, for `custom` answers. */
export interface Rotation {
  access_token: string;
  refresh_token: string;
}

/**
 * A loopback upstream OAuth token endpoint with rotating refresh tokens: each refresh token works
 * once and is replaced; `mode` switches to invalid_grant, 500 or malformed and oversized answers.
 */
export async function upstreamProvider(initialRefreshToken: string, clientId = 'up-client', clientSecret = 'up-secret') {
  const state = {
    valid: new Set([initialRefreshToken]),
    calls: 0,
    mode: 'ok' as UpstreamMode,
    /** Access tokens issued, in order. */
    issued: [] as string[],
    /** Rotated refresh tokens issued, in order. */
    issuedRefresh: [] as string[],
    /** Refresh tokens presented, in order. */
    seen: [] as string[],
    counter: 0,
    /** `big_scope`: the length of the scope. */
    scopeBytes: 100 * 1024,
    /** `custom`: the status and body text of the answer. */
    respond: ((r: Rotation) => ({ status: 200, body: JSON.stringify({ ...r, token_type: 'Bearer', expires_in: 3600 }) })) as (r: Rotation) => { status: number; body: string },
    /** `endless`: bytes written before the client went away. */
    endlessBytes: 0,
  };
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', async () => {
      state.calls++;
      const form = new URLSearchParams(body);
      const expected = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`;
      const json = (status: number, o: object) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(o));
      if (req.headers.authorization !== expected) return json(401, { error: 'invalid_client' });
      if (state.mode === 'error') return json(503, { error: 'temporarily_unavailable' });
      if (state.mode === 'slow') await new Promise((r) => setTimeout(r, 300));
      const rt = form.get('refresh_token') ?? '';
      state.seen.push(rt);
      if (form.get('grant_type') !== 'refresh_token' || state.mode === 'invalid_grant' || !state.valid.has(rt)) return json(400, { error: 'invalid_grant' });
      state.valid.delete(rt);
      const next = `rt-rotated-${++state.counter}-${Math.random().toString(36).slice(2)}`;
      state.valid.add(next);
      state.issuedRefresh.push(next);
      const access = `at-${state.counter}-${Math.random().toString(36).slice(2)}`;
      state.issued.push(access);
      if (state.mode === 'big_scope') return json(200, { access_token: access, token_type: 'Bearer', expires_in: 3600, refresh_token: next, scope: bigScope(state.scopeBytes) });
      if (state.mode === 'huge_body') return json(200, { refresh_token: next, access_token: access, token_type: 'Bearer', expires_in: 3600, scope: bigScope(2 * 1024 * 1024) });
      if (state.mode === 'endless') return endless(res, `{"refresh_token":${JSON.stringify(next)},"access_token":${JSON.stringify(access)},"scope":"`, state);
      if (state.mode === 'custom') {
        const { status, body: text } = state.respond({ access_token: access, refresh_token: next });
        return res.writeHead(status, { 'content-type': 'application/json' }).end(text);
      }
      json(200, { access_token: access, token_type: 'Bearer', expires_in: 3600, refresh_token: next, scope: 'drive.read' });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  const close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return { url: `http://127.0.0.1:${port}/token`, state, clientId, clientSecret, close };
}

/** `drive.read` followed by distinct scope tokens up to `bytes` characters. */
function bigScope(bytes: number): string {
  const parts = ['drive.read'];
  let length = parts[0].length;
  for (let i = 0; length < bytes; i++) {
    const token = `scope.${i}`;
    parts.push(token);
    length += token.length + 1;
  }
  return parts.join(' ').slice(0, bytes);
}

/** Writes `head` then scope characters forever, as fast as the client reads, until the client goes away. */
function endless(res: ServerResponse, head: string, state: { endlessBytes: number }): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write(head);
  const chunk = 'x'.repeat(64 * 1024);
  const pump = () => {
    while (!res.destroyed && !res.writableEnded) {
      state.endlessBytes += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
  };
  pump();
}
