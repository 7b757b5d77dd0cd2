import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';

/**
 * Issue 11 item 8 (API.md v1.1 Conventions): errors raised before routing — over-long or
 * undecodable paths, oversized headers, requests HTTP cannot parse — are problem+json (RFC 6749
 * JSON on /oauth), echo nothing of the input, and an over-long or malformed id is 404 not_found.
 * Over a real socket: some of these never reach Fastify's inject.
 */
let t: TestApp;
let port: number;
beforeAll(async () => {
  t = await startApp();
  await t.app.listen(0, '127.0.0.1');
  port = (t.app.getHttpServer().address() as { port: number }).port;
});
afterAll(async () => {
  await t?.close();
});

interface Raw {
  status: number;
  type: string;
  requestId: string | undefined;
  text: string;
}

function raw(method: string, path: string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), requestId: res.headers['x-request-id'] as string | undefined, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

const MARK = 'ECHOMARK';
const long = (n: number) => MARK + 'x'.repeat(n);

function expectProblem(res: Raw, status: number, code: string) {
  expect(res.status, res.text).toBe(status);
  expect(res.type).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(res.text)).toMatchObject({ status, code, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
  expect(res.text).not.toContain(MARK);
}

describe('errors before routing', () => {
  it('an over-long id is 404 not_found, without echoing it (v1, pages)', async () => {
    for (const path of [`/v1/users/usr_${long(2000)}`, `/v1/step-ups/${long(5000)}`, `/approve/${long(3000)}`, `/v1/approvals/${long(3000)}/totp`]) {
      const res = await raw('GET', path);
      expectProblem(res, 404, 'not_found');
      expect(res.requestId).toEqual(expect.any(String));
    }
  });

  it('on /oauth the same refusal is RFC 6749 JSON', async () => {
    const res = await raw('GET', `/oauth/${long(3000)}`);
    expect(res.status).toBe(404);
    expect(res.type).toMatch(/^application\/json/);
    expect(JSON.parse(res.text)).toEqual({ error: 'invalid_request', error_description: expect.any(String) });
    expect(res.text).not.toContain(MARK);
  });

  it('a path that does not percent-decode is 404 not_found, and the connection gets an answer', async () => {
    for (const path of [`/v1/users/${MARK}%E0%A4%A`, `/approve/${MARK}%zz`, `/v1/agents/${MARK}%`]) expectProblem(await raw('GET', path), 404, 'not_found');
  });

  it('oversized headers are 431 problem+json', async () => {
    expectProblem(await raw('GET', '/v1/whoami', { 'x-big': long(20_000) }), 431, 'headers_too_large');
  });

  it('on /oauth, requests HTTP cannot parse and oversized headers are RFC 6749 JSON too', async () => {
    for (const [res, status] of [[await raw('BREW', `/oauth/token?${MARK}`), 400], [await raw('GET', '/oauth/token', { 'x-big': long(20_000) }), 431]] as const) {
      expect(res.status, res.text).toBe(status);
      expect(res.type).toMatch(/^application\/json/);
      expect(JSON.parse(res.text)).toEqual({ error: 'invalid_request', error_description: expect.any(String) });
      expect(res.text).not.toContain(MARK);
    }
  });

  it('a request HTTP cannot parse (unknown method) is 400 problem+json', async () => {
    expectProblem(await raw('BREW', `/v1/users/${MARK}`), 400, 'validation_failed');
  });
});
