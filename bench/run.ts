/**
 * `npm run bench`: requests per second and latency of the hot paths, against the real service
 * (SQLite by default; set DATABASE_URL / REDIS_URL to measure PostgreSQL + Redis).
 *   - agent-token auth: GET /v1/whoami with a Bearer agent token (JWT verify + cached principal)
 *   - token issuance:   POST /oauth/token (client_secret_basic)
 *   - verify:           POST /v1/mfa-proxy-tokens/verify of an already-consumed token
 *                       (signature, claims, conditional update, failure audit row: the full path)
 */
import autocannon from 'autocannon';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../src/bootstrap.js';
import { loadConfig } from '../src/config/config.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);

async function main(): Promise<void> {
  const port = 3900 + Math.floor(Math.random() * 50);
  const admin = `mpx_adm_${randomBytes(24).toString('base64url')}`;
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: String(port),
    MASTER_KEY: randomBytes(32).toString('base64'),
    ADMIN_TOKEN: admin,
    DATABASE_URL: process.env.DATABASE_URL ?? `sqlite:${join(tmpdir(), `mpx-bench-${Date.now()}.sqlite`)}`,
    ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
    LOG_LEVEL: 'silent',
  });
  const app = await createApp(config);
  await app.listen({ port, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${port}`;
  const post = async (path: string, auth: string, body: unknown) => {
    const res = await fetch(base + path, { method: 'POST', headers: { Authorization: auth, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    return res.json() as Promise<Record<string, string>>;
  };
  const tenant = await post('/v1/apps', `Bearer ${admin}`, { name: 'bench' });
  const user = await post('/v1/users', `Bearer ${tenant.apiKey}`, { externalId: 'bench', displayName: 'Bench' });
  // /oauth/token is limited to 60 per minute per client: spread issuance over enough agents.
  const basics: string[] = [];
  for (let i = 0; i < 300; i++) {
    const agent = await post('/v1/agents', `Bearer ${tenant.apiKey}`, { userId: user.id, name: `bench-${i}`, model: 'bench-model', permissionBoundaries: ['files:*'], rateLimitPerMinute: 1_000_000 });
    basics.push(`Basic ${Buffer.from(`${agent.id}:${agent.clientSecret}`).toString('base64')}`);
  }
  const basic = basics[0];
  const token = (await post('/oauth/token', basic, { grant_type: 'client_credentials', scope: 'files:read' })).access_token;
  let next = 0;

  const runs: { name: string; opts: autocannon.Options }[] = [
    { name: 'agent-token auth (GET /v1/whoami)', opts: { url: `${base}/v1/whoami`, headers: { authorization: `Bearer ${token}` } } },
    {
      name: 'token issuance (POST /oauth/token)',
      opts: {
        url: `${base}/oauth/token`,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials&scope=files%3Aread',
        // Each request authenticates as the next agent, round robin.
        requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: basics[next++ % basics.length] } }) }],
      },
    },
    {
      name: 'verify (POST /v1/mfa-proxy-tokens/verify, already used)',
      opts: {
        url: `${base}/v1/mfa-proxy-tokens/verify`,
        method: 'POST',
        headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' },
        // An agent token stands in for a consumed MFA-proxy token: same signature and claim checks, then refused.
        body: JSON.stringify({ token, action: 'files:delete' }),
      },
    },
  ];

  console.log(`mfa-proxy bench: ${config.database.type}${config.redis ? ' + redis' : ''}, ${CONNECTIONS} connections, ${DURATION} s each, node ${process.version}`);
  for (const run of runs) {
    process.stdout.write(`${run.name} … `);
    const result = await autocannon({ ...run.opts, connections: CONNECTIONS, duration: DURATION });
    const non2xx = result.non2xx + result.errors;
    console.log(`${Math.round(result.requests.average)} req/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms${non2xx ? `, ${non2xx} non-2xx/errors` : ''}`);
  }
  await app.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
