import type { TestApp } from './app.js';

export interface Tenant {
  appId: string;
  apiKey: string;
  webhookSecret: string;
}

export interface AgentFixture {
  id: string;
  userId: string;
  clientSecret: string;
  model: string;
}

let counter = 0;
const unique = (p: string) => `${p}-${process.pid}-${Date.now()}-${++counter}`;

export async function createTenant(t: TestApp, name = unique('app'), body: Record<string, unknown> = {}): Promise<Tenant> {
  const res = await t.http.post('/v1/apps').set('Authorization', `Bearer ${t.adminToken}`).send({ name, ...body }).expect(201);
  return { appId: res.body.id, apiKey: res.body.apiKey, webhookSecret: res.body.webhookSecret };
}

export async function createUser(t: TestApp, tenant: Tenant, body: Record<string, unknown> = {}): Promise<string> {
  const res = await t.http
    .post('/v1/users')
    .set('Authorization', `Bearer ${tenant.apiKey}`)
    .send({ externalId: unique('user'), displayName: 'Ada Lovelace', ...body })
    .expect(201);
  return res.body.id;
}

export async function createAgent(t: TestApp, tenant: Tenant, userId: string, body: Record<string, unknown> = {}): Promise<AgentFixture> {
  const res = await t.http
    .post('/v1/agents')
    .set('Authorization', `Bearer ${tenant.apiKey}`)
    .send({ userId, name: 'research-bot', model: 'claude-test-1', permissionBoundaries: ['research:read', 'files:*'], ...body })
    .expect(201);
  return { id: res.body.id, userId, clientSecret: res.body.clientSecret, model: res.body.model };
}

export async function agentToken(t: TestApp, agent: AgentFixture, form: Record<string, string> = {}): Promise<string> {
  const res = await t.http
    .post('/oauth/token')
    .auth(agent.id, agent.clientSecret)
    .type('form')
    .send({ grant_type: 'client_credentials', ...form })
    .expect(200);
  return res.body.access_token;
}

/** A tenant with one user and one agent, and a token for it. */
export async function world(t: TestApp, agentBody: Record<string, unknown> = {}) {
  const tenant = await createTenant(t);
  const userId = await createUser(t, tenant);
  const agent = await createAgent(t, tenant, userId, agentBody);
  const token = await agentToken(t, agent);
  return { tenant, userId, agent, token };
}

export const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
