// npm run demo: one command, no configuration. Starts the service on a temporary SQLite file and
// free ports, an Express "files" app whose DELETE is guarded by requireApproval, and an agent on
// @mfa-proxy/agent; a scripted human approves with TOTP, or with `--browser` Chromium with a virtual
// passkey on the real enrollment and approval pages. Prints each step, stops what it started.
import { MfaProxyAgent } from '@mfa-proxy/agent';
import { MfaProxyApp } from '@mfa-proxy/app';
import { agentAuth, requireApproval } from '@mfa-proxy/app/express';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import express from 'express';
import { exportJWK, generateKeyPair } from 'jose';
import { generate } from 'otplib';
import { addVirtualAuthenticator, launchBrowser, waitForText } from './browser.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const BROWSER = process.argv.includes('--browser');
const started: Array<() => Promise<void>> = [];
const step = (n: number, text: string) => console.log(`\n[${n}] ${text}`);
const note = (text: string) => console.log(`    ${text}`);

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

async function startService(): Promise<{ base: string; adminToken: string }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'mfa-proxy-demo-'));
  const adminToken = `mpx_adm_${randomBytes(24).toString('base64url')}`;
  const base = `http://localhost:${port}`;
  const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'dist/src/main.js')], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: base,
      DATABASE_URL: `sqlite:${join(dir, 'demo.sqlite')}`,
      MASTER_KEY: randomBytes(32).toString('base64'),
      ADMIN_TOKEN: adminToken,
      WEBHOOK_ALLOW_PRIVATE: 'true',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  started.push(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  const until = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service exited:\n${output}`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`the service did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { base, adminToken };
}

async function call(base: string, method: string, path: string, key: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const totp = (secret: string, atMs = Date.now()) => generate({ secret, epoch: Math.floor(atMs / 1000), digits: 6, period: 30, algorithm: 'sha1' });

async function main(): Promise<void> {
  step(1, 'Starting mfa-proxy on a temporary SQLite file');
  const { base, adminToken } = await startService();
  note(`service: ${base}`);

  step(2, 'Starting the example app: an Express "files" API whose DELETE needs the human’s approval');
  const appPort = await freePort();
  const appBase = `http://127.0.0.1:${appPort}`;
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const registered = await call(base, 'POST', '/v1/apps', adminToken, {
    name: 'Files demo',
    webhookUrl: `${appBase}/hooks`,
    resource: appBase,
    challengeJwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'demo-1', alg: 'ES256', use: 'sig' }] },
  });
  const apiKey = String(registered.apiKey);
  const app = new MfaProxyApp({
    issuer: base,
    appId: String(registered.id),
    apiKey: String(registered.apiKey),
    resource: appBase,
    challengeKey: { ...(await exportJWK(privateKey)), kid: 'demo-1' },
    webhookSecret: String(registered.webhookSecret),
  });
  const files = new Set(['q3-report.pdf', 'notes.txt']);
  const approvalLinks: string[] = [];
  const web = express();
  web.post('/hooks', express.raw({ type: '*/*' }), (req, res) => {
    try {
      const event = app.webhooks.verify(req.body as Buffer, req.headers as Record<string, string>);
      if (event.type === 'step_up.created') approvalLinks.push(String(event.data.approvalUrl));
      res.status(204).end();
    } catch {
      res.status(400).end();
    }
  });
  web.get('/files', agentAuth(app), (_req, res) => void res.json({ files: [...files] }));
  web.delete(
    '/files/:name',
    agentAuth(app),
    requireApproval(app, (req) => ({ action: 'files:delete', resource: `files://${String(req.params.name)}`, details: { name: req.params.name }, reason: 'Deleting a file cannot be undone' })),
    (req, res) => {
      const name = String(req.params.name);
      files.delete(name);
      res.json({ deleted: name, approvedBy: req.approval?.userId, method: req.approval?.method });
    },
  );
  const server: Server = await new Promise((r) => {
    const s = web.listen(appPort, '127.0.0.1', () => r(s));
  });
  started.push(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  note(`app: ${appBase} (registered as ${String(registered.id)})`);

  const user = await call(base, 'POST', '/v1/users', apiKey, { externalId: 'ada', displayName: 'Ada Lovelace' });
  const link = String((await call(base, 'POST', `/v1/users/${String(user.id)}/enrollment-links`, apiKey, {})).url);
  let secret = '';
  let page: import('playwright-core').Page | undefined;
  if (BROWSER) {
    step(3, 'Ada signs up in the app and adds a passkey on the enrollment page (Chromium, virtual authenticator)');
    const browser = await launchBrowser();
    started.push(() => browser.close());
    page = await browser.context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const authenticator = await addVirtualAuthenticator(page);
    await page.goto(link);
    note(`Chromium opened ${link.replace(/\/enroll\/.*/, '/enroll/…')}: "${((await page.textContent('h1')) ?? '').trim()}"`);
    await page.getByLabel('Name for this passkey').fill('Demo passkey');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    note(`page: ${(await waitForText(page, '#status', 'added')).trim()}`);
    if ((await authenticator.credentials()) !== 1) throw new Error('the virtual authenticator holds no passkey');
    if (pageErrors.length) throw new Error(`the enrollment page failed: ${pageErrors.join('; ')}`);
    const factors = (await call(base, 'GET', `/v1/users/${String(user.id)}`, apiKey)).factors as Array<{ type: string; name?: string }>;
    note(`user ${String(user.id)} with factors ${JSON.stringify(factors.map((f) => `${f.type}${f.name ? `:${f.name}` : ''}`))}`);
  } else {
    step(3, 'Ada signs up in the app and enrols an authenticator app (TOTP)');
    const enrollToken = link.split('/enroll/')[1];
    const factor = await call(base, 'POST', `/v1/enrollment/${enrollToken}/totp`, '', {});
    secret = String(factor.secret);
    // enrol with the previous step's code, so the current one stays free for the approval
    if (Date.now() % 30_000 > 27_000) await new Promise((r) => setTimeout(r, 3_500));
    await call(base, 'POST', `/v1/enrollment/${enrollToken}/totp/verify`, '', { factorId: factor.factorId, code: await totp(secret, Date.now() - 30_000) });
    note(`user ${String(user.id)} with TOTP factor ${String(factor.factorId)}`);
  }

  step(4, 'The app registers Ada’s agent');
  const agentRow = await call(base, 'POST', '/v1/agents', apiKey, { userId: user.id, name: 'tidy-bot', model: 'demo-model-1', permissionBoundaries: ['files:*'] });
  note(`agent ${String(agentRow.id)} (boundaries files:*)`);
  const sent: string[] = [];
  const agent = new MfaProxyAgent({
    issuer: base,
    clientId: String(agentRow.id),
    clientSecret: String(agentRow.clientSecret),
    resources: [appBase], // the only app it sends its token to and takes challenges from
    fetch: (input, init) => {
      sent.push(new Request(input, init).headers.get('authorization') ?? '');
      return fetch(input, init);
    },
    onPending: (p) => note(`challenged: waiting for the human (request ${p.id.slice(0, 12)}…${p.bindingCode ? `, code ${p.bindingCode}` : ''})`),
  });

  step(5, 'The agent lists the files');
  const listed = await agent.fetch(`${appBase}/files`);
  note(`GET /files → ${listed.status} ${JSON.stringify(await listed.json())}`);
  if (listed.status !== 200) throw new Error('listing failed');

  step(6, 'The agent deletes q3-report.pdf: the app answers with a transaction challenge, the agent takes it to mfa-proxy and waits');
  const deleting = agent.fetch(`${appBase}/files/q3-report.pdf`, { method: 'DELETE' });

  step(7, BROWSER
    ? 'The human opens the approval link (from the app’s webhook) in Chromium and approves with the passkey'
    : 'The human gets the approval link (from the app’s webhook) and approves with a TOTP code');
  const until = Date.now() + 30_000;
  while (!approvalLinks.length) {
    if (Date.now() > until) throw new Error('no approval link arrived');
    await new Promise((r) => setTimeout(r, 100));
  }
  const approvalToken = approvalLinks[0]!.split('/approve/')[1];
  if (page) {
    await page.goto(approvalLinks[0]!);
    const text = async (sel: string) => ((await page!.textContent(sel)) ?? '').trim();
    // a transaction challenge's page shows the app-signed operation and the app's reason
    note(`approval page shows: ${await text('h1')}: ${await text('#action')} ${await text('#resource')} ${(await text('#details')).replace(/\s+/g, '')} (“${await text('#app-reason')}”)`);
    await page.getByRole('button', { name: 'Approve with passkey' }).click();
    note(`page: ${(await waitForText(page, '#outcome', 'Approved')).trim()}`);
  } else {
    const shown = await (await fetch(`${base}/v1/approvals/${approvalToken}`)).json() as Record<string, unknown>;
    note(`approval page shows: ${String(shown.action)} ${String(shown.resource)} ${JSON.stringify(shown.details)} (code ${String(shown.bindingCode)})`);
    await call(base, 'POST', `/v1/approvals/${approvalToken}/totp`, '', { code: await totp(secret) });
    note('approved');
  }

  step(8, 'The agent retries once with the issued single-use token: the delete succeeds');
  const deleted = await deleting;
  note(`DELETE /files/q3-report.pdf → ${deleted.status} ${JSON.stringify(await deleted.json())}`);
  if (deleted.status !== 200 || files.has('q3-report.pdf')) throw new Error('the approved delete did not happen');

  step(9, 'A replay of the same token is refused');
  const used = sent.at(-1)!;
  files.add('q3-report.pdf'); // put it back: only the approval stands between the agent and the file
  const replay = await fetch(`${appBase}/files/q3-report.pdf`, { method: 'DELETE', headers: { authorization: used, 'accept-txn-challenge': '?1' } });
  const refused = (await replay.json()) as { reason?: string };
  note(`the same DELETE with the spent token → ${replay.status} (${refused.reason ?? 'refused'})`);
  if (replay.status !== 401 || refused.reason !== 'already_used' || !files.has('q3-report.pdf')) throw new Error('the replay was not refused');

  console.log(`\nDemo finished: one approval${BROWSER ? ' (passkey in Chromium)' : ''}, one delete, replay refused.`);
}

let code = 0;
try {
  await main();
} catch (err) {
  code = 1;
  console.error('\nDemo failed:', err);
} finally {
  for (const stop of started.reverse()) await stop().catch(() => undefined);
}
process.exit(code);
