import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyId } from '../src/common/crypto/cipher.js';
import { PUBLIC_URL, usingPostgres } from './support/app.js';
import { freePort } from './support/browser.js';
import { ensureBuilt, ROOT } from './support/build.js';
import { agentToken, bearer } from './support/fixtures.js';
import { deployment, startInstance, type Instance } from './support/instances.js';
import { approveWithCode, createStepUp, expectStatus, human, type Human } from './support/step-up.js';
import { upstreamProvider } from './support/upstream.js';
import { webhookReceiver } from './support/webhook-receiver.js';
import { proof, worker, type Worker } from './support/worker.js';

/**
 * Issue 11 item 9: the master key rotates with real restarts. Secrets are written under key A;
 * the service then runs with MASTER_KEY=B and MASTER_KEY_PREVIOUS=A, `rekey` re-encrypts every
 * encrypted column under B while it serves, and finally B alone reads everything.
 *
 * Signing keys are global rows: rotating the master key of a database shared with other test
 * files (which all use TEST_MASTER_KEY) would break them, so on PostgreSQL this file creates a
 * database of its own; on SQLite a temp file is shared by the processes.
 */

const KEY_A = randomBytes(32).toString('base64');
const KEY_B = randomBytes(32).toString('base64');
const KID_A = keyId(Buffer.from(KEY_A, 'base64'));
const KID_B = keyId(Buffer.from(KEY_B, 'base64'));
const CLI = join(ROOT, 'dist/src/cli.js');
const MAIN = join(ROOT, 'dist/src/main.js');

/** Every column that holds a ciphertext today (the test checks each holds one written under A). */
const EXPECTED_ENCRYPTED = [
  'apps.webhook_secret_enc',
  'apps.webhook_secret_prev_enc',
  'signing_keys.private_jwk_enc',
  'totp_secrets.secret_enc',
  'step_ups.approval_token_enc',
  'tasks.credential_enc',
  'connections.client_secret_enc',
  'user_connections.refresh_token_enc',
  'user_connections.access_token_enc',
];

/** Direct access to the deployment's database, for what the API cannot show (which key sealed a value). */
interface Db {
  all(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  run(sql: string, params?: unknown[]): Promise<number>;
  /** `table.column` of every column named `*_enc`, read from the schema itself. */
  encryptedColumns(): Promise<string[]>;
  close(): Promise<void>;
}

async function openDb(databaseUrl: string): Promise<Db> {
  const sqlite = databaseUrl.startsWith('sqlite:');
  const ds = await new DataSource(
    sqlite
      ? { type: 'better-sqlite3', database: databaseUrl.slice('sqlite:'.length), prepareDatabase: (db: { pragma(s: string): unknown }) => void db.pragma('busy_timeout = 5000') }
      : { type: 'postgres', url: databaseUrl },
  ).initialize();
  // Queries are written with `?`; PostgreSQL numbers its placeholders.
  const sql = (text: string) => {
    let i = 0;
    return sqlite ? text : text.replace(/\?/g, () => `$${++i}`);
  };
  const schema = sqlite
    ? `SELECT m.name AS t, p.name AS c FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name LIKE '%\\_enc' ESCAPE '\\'`
    : `SELECT table_name AS t, column_name AS c FROM information_schema.columns WHERE table_schema = current_schema() AND column_name LIKE '%\\_enc' ESCAPE '\\'`;
  return {
    all: (text, params = []) => ds.query(sql(text), params),
    run: async (text, params = []) => {
      const runner = ds.createQueryRunner();
      try {
        return (await runner.query(sql(text), params, true)).affected ?? 0;
      } finally {
        await runner.release();
      }
    },
    encryptedColumns: async () => ((await ds.query(schema)) as { t: string; c: string }[]).map((r) => `${r.t}.${r.c}`),
    close: () => ds.destroy(),
  };
}

/** How many values of each encrypted column were sealed under each master key id. */
async function sealedBy(db: Db): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const tc of await db.encryptedColumns()) {
    const [table, column] = tc.split('.');
    const counts: Record<string, number> = {};
    for (const row of await db.all(`SELECT "${column}" AS v FROM "${table}" WHERE "${column}" IS NOT NULL`)) {
      const kid = String(row.v).split('.')[1] ?? '?';
      counts[kid] = (counts[kid] ?? 0) + 1;
    }
    out[tc] = counts;
  }
  // Values sealed inside JSON documents (`{"$sealed":"v1.<kid>...."}`, e.g. an event's approvalUrl in the outbox).
  const inJson: Record<string, number> = {};
  for (const row of await db.all(`SELECT payload AS v FROM outbox WHERE payload LIKE ?`, ['%"$sealed":%'])) {
    for (const m of String(row.v).matchAll(/"\$sealed":"v1\.([0-9a-f]+)\./g)) inJson[m[1]] = (inJson[m[1]] ?? 0) + 1;
  }
  if (Object.keys(inJson).length) out['outbox.payload.$sealed'] = inJson;
  return out;
}

interface Outcome {
  started: boolean;
  exitCode: number | null;
  output: string;
}

/** Starts `node dist/src/main.js` and reports whether it became ready or exited (and how). */
async function boot(env: Record<string, string>): Promise<Outcome> {
  ensureBuilt();
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH, NODE_ENV: 'test', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    if (child.exitCode !== null) return { started: false, exitCode: child.exitCode, output };
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
    if (ready) {
      child.kill('SIGTERM');
      await exited;
      return { started: true, exitCode: null, output };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  await exited;
  return { started: false, exitCode: null, output };
}

/** Runs an operator command (`node dist/src/cli.js ...`) as its own process. */
async function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH, NODE_ENV: 'test', PUBLIC_URL, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return { code, output };
}

const jwtHeader = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString()) as { kid: string };

/** A human whose every kind of secret exists: TOTP, a pending step-up, a task, a vault connection. */
interface Party {
  h: Human;
  worker: Worker;
  taskId: string;
  connectionId: string;
  /** The pending step-up created under key A: the same body answers with the same approvalUrl. */
  pendingApprovalUrl: string;
  oldWebhookSecret: string;
  newWebhookSecret: string;
}

const upstreamPath = (p: Party) => `/v1/tasks/${p.taskId}/connections/${p.connectionId}/token`;
const drawUpstream = async (i: Instance, p: Party) => i.t.http.post(upstreamPath(p)).set('DPoP', await proof(p.worker, 'POST', upstreamPath(p)));

describe('master key rotation with real restarts (MASTER_KEY_PREVIOUS and `rekey`)', () => {
  let settings: Record<string, string>;
  let db: Db;
  let dropDatabase: (() => Promise<void>) | null = null;
  let rx: Awaited<ReturnType<typeof webhookReceiver>>;
  let upstream: Awaited<ReturnType<typeof upstreamProvider>>;
  let instance: Instance | null = null;
  /** Served first under B + previous A. */
  let p1: Party;
  /** Untouched until B alone, after rekey. */
  let p2: Party;
  /** Drew an upstream token under A: its cached access token is read after rekey. */
  let p3: Party;
  let p3AccessToken: string;
  let signingKid: string;

  async function party(i: Instance, refreshToken: string, draw: boolean): Promise<Party> {
    const h = await human(i.t, { permissionBoundaries: ['files:*', 'connection:up'] });
    await i.t.http.patch(`/v1/apps/${h.tenant.appId}`).set(bearer(settings.ADMIN_TOKEN)).send({ webhookUrl: rx.url }).expect(200);
    // The previous webhook secret keeps signing for a day: apps.webhook_secret_prev_enc is set.
    const rotated = await i.t.http.post(`/v1/apps/${h.tenant.appId}/webhook-secret`).set(bearer(settings.ADMIN_TOKEN)).expect(201);
    const pending = await createStepUp(i.t, h, { resource: 'drive://pending.pdf' }).expect(201);
    const w = await worker();
    const task = await i.t.http.post('/v1/tasks').set(bearer(h.token)).send({ taskId: 'rotation', scopes: ['connection:up'], workerJwk: w.jwk }).expect(201);
    const con = await i.t.http.post('/v1/connections').set(bearer(h.tenant.apiKey)).send({ name: 'up', tokenEndpoint: upstream.url, clientId: upstream.clientId, clientSecret: upstream.clientSecret }).expect(201);
    upstream.state.valid.add(refreshToken);
    await i.t.http.put(`/v1/users/${h.userId}/connections/${con.body.id}`).set(bearer(h.tenant.apiKey)).send({ refreshToken }).expect(204);
    const p: Party = { h, worker: w, taskId: task.body.id, connectionId: con.body.id, pendingApprovalUrl: pending.body.approvalUrl, oldWebhookSecret: h.tenant.webhookSecret, newWebhookSecret: rotated.body.webhookSecret };
    if (draw) {
      const res = await expectStatus(drawUpstream(i, p), 200);
      p3AccessToken = res.body.access_token;
    }
    return p;
  }

  /** Everything a party's secrets are used for, on a running instance. */
  async function exercise(i: Instance, p: Party, refreshToken: string): Promise<void> {
    // Token issuance signs with the signing key created (and sealed) under key A.
    const token = await agentToken(i.t, p.h.agent);
    expect(jwtHeader(token).kid).toBe(signingKid);
    await i.t.http.get('/v1/whoami').set(bearer(token)).expect(200);
    const h = { ...p.h, token };

    // The step-up created under A answers with the same approval URL (step_ups.approval_token_enc).
    const again = await createStepUp(i.t, h, { resource: 'drive://pending.pdf' }).expect(200);
    expect(again.body.approvalUrl).toBe(p.pendingApprovalUrl);
    // TOTP approval with the secret sealed under A (totp_secrets.secret_enc).
    await expectStatus(approveWithCode(i.t, h, p.pendingApprovalUrl), 200);
    const done = await i.t.http.get(`/v1/step-ups/${again.body.id}`).set(bearer(token)).expect(200);
    expect(done.body.status).toBe('approved');
    expect(jwtHeader(done.body.mfaProxyToken).kid).toBe(signingKid);
    const verified = await i.t.http
      .post('/v1/mfa-proxy-tokens/verify')
      .set(bearer(p.h.tenant.apiKey))
      .send({ token: done.body.mfaProxyToken, action: 'files:delete', resource: 'drive://pending.pdf', details: { size: 42 } })
      .expect(200);
    expect(verified.body.valid).toBe(true);

    // A new event is signed with the app's secrets sealed under A (current and previous).
    const fresh = await createStepUp(i.t, h, { resource: `drive://${randomBytes(4).toString('hex')}.pdf` }).expect(201);
    await expect.poll(() => rx.received.some((r) => r.json.data.stepUpId === fresh.body.id), { timeout: 15_000 }).toBe(true);
    const hook = rx.received.find((r) => r.json.data.stepUpId === fresh.body.id)!;
    expect(hook.json.data.approvalUrl).toBe(fresh.body.approvalUrl);
    for (const secret of [p.newWebhookSecret, p.oldWebhookSecret]) expect(() => new Webhook(secret).verify(hook.body, hook.headers)).not.toThrow();

    // The vault refreshes upstream with the deposited token and the client secret, both sealed under A.
    const seen = upstream.state.seen.length;
    const up = await expectStatus(drawUpstream(i, p), 200);
    expect(upstream.state.seen.slice(seen)).toEqual([refreshToken]);
    expect(up.body.access_token).toBe(upstream.state.issued.at(-1));
  }

  beforeAll(async () => {
    rx = await webhookReceiver();
    upstream = await upstreamProvider('rt-unused');
    let databaseUrl: string;
    if (usingPostgres()) {
      const name = `mpx_rekey_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
      await admin.connect();
      await admin.query(`CREATE DATABASE "${name}"`);
      await admin.end();
      const url = new URL(process.env.TEST_DATABASE_URL!);
      url.pathname = `/${name}`;
      databaseUrl = url.toString();
      dropDatabase = async () => {
        const c = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await c.end();
      };
    } else {
      const dir = mkdtempSync(join(tmpdir(), 'mpx-rekey-'));
      databaseUrl = `sqlite:${join(dir, 'db.sqlite')}`;
      dropDatabase = async () => rmSync(dir, { recursive: true, force: true });
    }
    settings = deployment({ DATABASE_URL: databaseUrl, WEBHOOK_RETRY_BASE_MS: '200', WEBHOOK_TIMEOUT_MS: '2000' });

    // Key A: every kind of secret is written.
    instance = await startInstance(settings, { MASTER_KEY: KEY_A });
    p1 = await party(instance, 'rt-p1', false);
    p2 = await party(instance, 'rt-p2', false);
    p3 = await party(instance, 'rt-p3', true);
    await instance.stop();
    instance = null;
    // A signing-key rotation under A: the retired key stays published, the new one signs.
    const rotated = await cli(['rotate-keys'], { ...settings, MASTER_KEY: KEY_A });
    expect(rotated.code, rotated.output).toBe(0);
    signingKid = /new signing key (\S+);/.exec(rotated.output)![1];

    db = await openDb(databaseUrl);
    const sealed = await sealedBy(db);
    for (const column of EXPECTED_ENCRYPTED) expect(sealed[column]?.[KID_A], `${column} holds a value sealed under A`).toBeGreaterThan(0);
  }, 180_000);

  afterAll(async () => {
    await instance?.stop();
    await db?.close();
    await dropDatabase?.();
    await rx?.close();
    await upstream?.close();
  });

  it('a malformed MASTER_KEY_PREVIOUS stops boot with exit code 78, naming the variable and not echoing it', async () => {
    const bad = Buffer.from('sixteen byte key').toString('base64');
    const outcome = await boot({ ...settings, MASTER_KEY: KEY_B, MASTER_KEY_PREVIOUS: `${KEY_A},${bad}` });
    expect(outcome.started).toBe(false);
    expect(outcome.exitCode).toBe(78);
    expect(outcome.output).toContain('MASTER_KEY_PREVIOUS');
    expect(outcome.output).not.toContain(bad);
    expect(outcome.output).not.toContain(KEY_A);
  });

  it('MASTER_KEY=B alone does not serve secrets sealed under A: boot fails, naming MASTER_KEY_PREVIOUS', async () => {
    const outcome = await boot({ ...settings, MASTER_KEY: KEY_B });
    expect(outcome.started).toBe(false);
    expect(outcome.exitCode).not.toBe(0);
    expect(outcome.output).toMatch(/master key .*MASTER_KEY_PREVIOUS/);
    expect(outcome.output).toContain(KID_A);
    expect(outcome.output).not.toContain(KEY_A);
    expect(outcome.output).not.toContain(KEY_B);
  }, 60_000);

  it('MASTER_KEY=B with MASTER_KEY_PREVIOUS=A serves everything sealed under A; what it writes is sealed under B', async () => {
    instance = await startInstance(settings, { MASTER_KEY: KEY_B, MASTER_KEY_PREVIOUS: KEY_A });
    const before = await sealedBy(db);
    await exercise(instance, p1, 'rt-p1');
    const after = await sealedBy(db);
    // The vault's rotated refresh token and the new step-up's approval token are sealed under B.
    expect(after['user_connections.refresh_token_enc'][KID_B]).toBe((before['user_connections.refresh_token_enc'][KID_B] ?? 0) + 1);
    expect(after['step_ups.approval_token_enc'][KID_B]).toBeGreaterThan(before['step_ups.approval_token_enc'][KID_B] ?? 0);
  }, 120_000);

  it('`rekey` re-encrypts every encrypted column of every table under B while an instance serves, reports per table, and a re-run has nothing to do', async () => {
    expect(instance).not.toBeNull();
    const env = { ...settings, MASTER_KEY: KEY_B, MASTER_KEY_PREVIOUS: KEY_A };
    const first = await cli(['rekey', '--batch-size=2'], env);
    expect(first.code, first.output).toBe(0);
    for (const table of ['apps', 'signing_keys', 'totp_secrets', 'step_ups', 'tasks', 'connections', 'user_connections', 'outbox']) {
      expect(first.output).toMatch(new RegExp(`${table}: \\d+ row`));
    }
    expect(first.output).not.toContain(KEY_A);
    const sealed = await sealedBy(db);
    for (const [column, counts] of Object.entries(sealed)) expect(Object.keys(counts), column).toEqual(Object.keys(counts).length ? [KID_B] : []);
    for (const column of EXPECTED_ENCRYPTED) expect(sealed[column][KID_B], column).toBeGreaterThan(0);

    const second = await cli(['rekey'], env);
    expect(second.code, second.output).toBe(0);
    expect(second.output).toMatch(/0 row\(s\) re-encrypted in total/);
    await instance!.stop();
    instance = null;
  }, 120_000);

  it('after rekey, MASTER_KEY=B alone serves everything', async () => {
    instance = await startInstance(settings, { MASTER_KEY: KEY_B });
    await exercise(instance, p2, 'rt-p2');
    // The access token cached under A, re-encrypted by rekey, is handed out without an upstream call.
    const calls = upstream.state.calls;
    const cached = await expectStatus(drawUpstream(instance, p3), 200);
    expect(cached.body.access_token).toBe(p3AccessToken);
    expect(upstream.state.calls).toBe(calls);
  }, 120_000);

  it('a ciphertext copied to another row is still refused: rekey kept the row binding', async () => {
    expect(instance).not.toBeNull();
    // p3's cached upstream access token, sealed for p3's row, pasted into p2's row.
    const [source] = await db.all(`SELECT access_token_enc AS v FROM user_connections WHERE connection_id = ?`, [p3.connectionId]);
    expect(String(source.v).split('.')[1]).toBe(KID_B);
    expect(await db.run(`UPDATE user_connections SET access_token_enc = ? WHERE connection_id = ?`, [source.v, p2.connectionId])).toBe(1);
    const res = await drawUpstream(instance!, p2);
    expect(res.status).toBe(500);
    expect(JSON.stringify(res.body)).not.toContain(p3AccessToken);
  });
});
