/**
 * Everything one database's bench run needs up and running: the service (one or two instances),
 * the floor and both peers, each in its own process, and the fixtures they share (a tenant with
 * N agents whose ids and secrets are also the peer's clients; a second tenant for the floor's
 * own verify tokens). `stopAll()` stops what was started, in reverse.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchDb } from './db.js';
import { BENCH_DIST } from './options.js';
import { startNode, stop, waitForHttp, type Started } from './procs.js';
import { basicAuth, createAgents, createTenant, newSecrets, serviceEnv, startService, type BenchAgent, type ServiceInstance, type Tenant } from './service.js';
import type { FloorConfig } from '../servers/floor.js';
import type { PeerOidcConfig } from '../servers/peer-oidc.js';
import type { PeerNestConfig } from '../servers/peer-nest.js';

export const PORTS = { service: 4101, service2: 4102, floor: 4110, peerOidc: 4111, peerNest: 4112, receiver: 4120 } as const;

export interface Fleet {
  services: ServiceInstance[];
  /** The service's environment (PUBLIC_URL is instance 1's: both instances are one issuer). */
  env: Record<string, string>;
  tenant: Tenant;
  floorTenant: Tenant;
  /** The agent of the floor's tenant, named in the floor's seeded step-ups. */
  floorAgent: BenchAgent;
  agents: BenchAgent[];
  floor: string;
  peerOidc: string;
  peerNest: string;
  introspector: { id: string; secret: string; basic: string };
  procs: Started[];
  stopAll(): Promise<void>;
}

export async function startFleet(db: BenchDb, serviceDir: string, instances: number, agentCount: number, logDir: string, log: (s: string) => void): Promise<Fleet> {
  const procs: Started[] = [];
  const stopAll = async () => {
    for (const p of [...procs].reverse()) await stop(p);
  };
  try {
    const { masterKey, adminToken } = newSecrets();
    const env = serviceEnv({ db, masterKey, adminToken, port: PORTS.service });
    log(`starting mfa-proxy (${serviceDir}) on :${PORTS.service}`);
    const services = [await startService(serviceDir, 'mfa-proxy', env, join(logDir, `${db.kind}-service-1.log`))];
    procs.push(services[0].proc);
    if (instances === 2) {
      log(`starting a second mfa-proxy instance on :${PORTS.service2}`);
      const s2 = await startService(serviceDir, 'mfa-proxy-2', { ...env, PORT: String(PORTS.service2) }, join(logDir, `${db.kind}-service-2.log`));
      procs.push(s2.proc);
      services.push({ ...s2, base: `http://127.0.0.1:${PORTS.service2}` });
    }
    const base = services[0].base;
    log(`creating fixtures (${agentCount} agents)`);
    const tenant = await createTenant(base, adminToken, 'bench');
    const agents = await createAgents(base, tenant, agentCount, 'bench');
    const floorTenant = await createTenant(base, adminToken, 'bench-floor');
    const [floorAgent] = await createAgents(base, floorTenant, 1, 'bench-floor');

    const floorCfg: FloorConfig = { port: PORTS.floor, databaseUrl: db.url, jwksUrl: `${base}/.well-known/jwks.json`, serviceIssuer: env.PUBLIC_URL, app: { id: floorTenant.appId, apiKey: floorTenant.apiKey } };
    const introspector = { id: 'bench-resource-server', secret: randomBytes(24).toString('hex') };
    const peerOidcCfg: PeerOidcConfig = { port: PORTS.peerOidc, clients: agents.map((a) => ({ id: a.id, secret: a.secret })), introspector };
    const peerNestCfg: PeerNestConfig = { port: PORTS.peerNest, jwksUrl: floorCfg.jwksUrl, serviceIssuer: env.PUBLIC_URL };
    const start = async (name: string, script: string, cfg: unknown, port: number) => {
      const file = join(db.dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(cfg));
      const p = startNode(name, join(BENCH_DIST, script), [file], { NODE_ENV: 'production' }, join(logDir, `${db.kind}-${name}.log`));
      procs.push(p);
      await waitForHttp(`http://127.0.0.1:${port}/healthz`, p);
      return `http://127.0.0.1:${port}`;
    };
    log('starting floor, oidc-provider and the Nest peer');
    const floor = await start('floor', 'servers/floor.js', floorCfg, PORTS.floor);
    const peerOidc = await start('peer-oidc', 'servers/peer-oidc.js', peerOidcCfg, PORTS.peerOidc);
    const peerNest = await start('peer-nest', 'servers/peer-nest.js', peerNestCfg, PORTS.peerNest);
    return {
      services, env, tenant, floorTenant, floorAgent, agents, floor, peerOidc, peerNest,
      introspector: { ...introspector, basic: basicAuth(introspector.id, introspector.secret) },
      procs, stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
