import { createServer } from 'node:http';

/**
 * A loopback upstream OAuth token endpoint with rotating refresh tokens: each refresh token works
 * once and is replaced; `mode` switches to invalid_grant or 500 answers.
 */
export async function upstreamProvider(initialRefreshToken: string, clientId = 'up-client', clientSecret = 'up-secret') {
  const state = { valid: new Set([initialRefreshToken]), calls: 0, mode: 'ok' as 'ok' | 'invalid_grant' | 'error' | 'slow', issued: [] as string[], seen: [] as string[], counter: 0 };
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
      const access = `at-${state.counter}-${Math.random().toString(36).slice(2)}`;
      state.issued.push(access);
      json(200, { access_token: access, token_type: 'Bearer', expires_in: 3600, refresh_token: next, scope: 'drive.read' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/token`, state, clientId, clientSecret, close: () => new Promise<void>((r) => server.close(() => r())) };
}
