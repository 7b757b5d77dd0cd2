import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DataSource } from 'typeorm';
import { hashSecret } from '../src/common/crypto/tokens.js';
import { AgentTokensService } from '../src/modules/oauth/agent-tokens.service.js';
import { TokenConsumer } from '../src/modules/mfa-proxy-tokens/token-consumer.js';
import { startApp, usingPostgres, type TestApp } from './support/app.js';
import { bearer } from './support/fixtures.js';
import { approveWithPasskey, createStepUp, expectStatus, human, type Human } from './support/step-up.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

/** The order of the P-256 group: an ECDSA signature (r, s) verifies as (r, n − s) too. */
const P256_N = BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551');

/** The same token with its signature's other ECDSA form (r, n − s): validly signed, another string. */
function otherSignatureForm(token: string): string {
  const [header, payload, sig] = token.split('.');
  const raw = Buffer.from(sig, 'base64url');
  const s = BigInt(`0x${raw.subarray(32).toString('hex')}`);
  const flipped = Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex');
  return `${header}.${payload}.${Buffer.concat([raw.subarray(0, 32), flipped]).toString('base64url')}`;
}

/** `?` placeholders, numbered for PostgreSQL. */
const sql = (text: string) => (usingPostgres() ? text.replace(/\?/g, ((n) => () => `$${++n}`)(0)) : text);

/**
 * Verification admits the MFA-proxy token handed out by its hash (stored with its jti at hand-out)
 * without checking its signature; any other string is decided by its signature, as before.
 */
describe('verify-and-consume by the issued token’s hash', () => {
  async function approved(h: Human): Promise<{ id: string; token: string }> {
    const created = await createStepUp(t, h).expect(201);
    await expectStatus(approveWithPasskey(t, h, created.body.approvalUrl), 200);
    const token = (await t.http.get(`/v1/step-ups/${created.body.id}`).set(bearer(h.token)).expect(200)).body.mfaProxyToken as string;
    return { id: created.body.id, token };
  }
  const verify = (h: Human, token: string) =>
    t.http.post('/v1/mfa-proxy-tokens/verify').set(bearer(h.tenant.apiKey)).send({ token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } }).expect(200);
  const row = async (id: string): Promise<{ token_hash: string | null; token_jti: string; consumed_at: unknown }> =>
    (await t.app.get(DataSource).query(sql('SELECT token_hash, token_jti, consumed_at FROM step_ups WHERE id = ?'), [id]))[0];
  const setHash = (id: string, hash: string | null) => t.app.get(DataSource).query(sql('UPDATE step_ups SET token_hash = ? WHERE id = ?'), [hash, id]);
  /** In-process requests issued together: they reach the consumer in the same turn, so share its batches. */
  const inject = (h: Human, token: string) =>
    (t.app.getHttpAdapter().getInstance() as { inject(o: Record<string, unknown>): Promise<{ statusCode: number; json(): Record<string, unknown> }> }).inject({
      method: 'POST', url: '/v1/mfa-proxy-tokens/verify', headers: { authorization: `Bearer ${h.tenant.apiKey}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42 } }),
    });

  it('the hash of the token handed out is stored with its jti; that token is consumed once, then already_used', async () => {
    const h = await human(t);
    const { id, token } = await approved(h);
    expect(await row(id)).toMatchObject({ token_hash: hashSecret(token), token_jti: decodeJwt(token).jti, consumed_at: null });
    expect((await verify(h, token)).body).toMatchObject({ valid: true, stepUpId: id, agentId: h.agent.id, userId: h.userId });
    expect((await row(id)).consumed_at).not.toBeNull();
    expect((await verify(h, token)).body).toEqual({ valid: false, reason: 'already_used' });
  });

  it('the stored hash is what admits a token on this path, not its signature: a string stored as issued is consumed though its signature is not valid', async () => {
    // Shows which check decides (the database holds what was issued); an attacker cannot store a hash.
    const h = await human(t);
    const { id, token } = await approved(h);
    const altered = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BA' : 'AA'}`;
    await setHash(id, hashSecret(altered));
    expect((await verify(h, altered)).body).toMatchObject({ valid: true, stepUpId: id });
    expect((await verify(h, token)).body).toEqual({ valid: false, reason: 'already_used' });
  });

  it('a string other than the one issued is decided by its signature: a changed claim or signature is invalid_signature and consumes nothing', async () => {
    const h = await human(t);
    const { id, token } = await approved(h);
    const [header, payload, sig] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const otherPayload = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString('base64url');
    const forged = [`${header}.${otherPayload}.${sig}`, `${header}.${payload}.${Buffer.alloc(64, 7).toString('base64url')}`];
    for (const f of forged) expect((await verify(h, f)).body).toEqual({ valid: false, reason: 'invalid_signature' });
    expect((await row(id)).consumed_at).toBeNull();
    expect((await verify(h, token)).body).toMatchObject({ valid: true, stepUpId: id });
  });

  it('the other ECDSA form of the same signature (a valid signature on another string) is verified by signature and consumed once', async () => {
    const h = await human(t);
    const { id, token } = await approved(h);
    const other = otherSignatureForm(token);
    expect(other).not.toBe(token);
    expect((await verify(h, other)).body).toMatchObject({ valid: true, stepUpId: id });
    expect((await verify(h, token)).body).toEqual({ valid: false, reason: 'already_used' });
    expect((await verify(h, other)).body).toEqual({ valid: false, reason: 'already_used' });
  });

  it('a token handed out before hashes were stored (none in its row) is verified by signature and consumed once', async () => {
    const h = await human(t);
    const { id, token } = await approved(h);
    await setHash(id, null);
    expect((await verify(h, token)).body).toMatchObject({ valid: true, stepUpId: id });
    expect((await verify(h, token)).body).toEqual({ valid: false, reason: 'already_used' });
  });

  it('an agent not in this instance’s cache, or a made-up one, sends the token to the signed path: the real one is consumed, the made-up one is invalid_signature', async () => {
    const h = await human(t);
    const { id, token } = await approved(h);
    const [header, payload] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const madeUp = `${header}.${Buffer.from(JSON.stringify({ ...claims, client_id: 'agt_madeup', act: { sub: 'agt_madeup' } })).toString('base64url')}.${token.split('.')[2]}`;
    expect((await verify(h, madeUp)).body).toEqual({ valid: false, reason: 'invalid_signature' });
    t.app.get(AgentTokensService).forget(h.agent.id);
    expect((await verify(h, token)).body).toMatchObject({ valid: true, stepUpId: id });
  });

  it('a forged token whose jti is not of our form never reaches a consume batch: other apps’ verifications in the same turn are consumed', async () => {
    const attacker = await human(t);
    const victims = await Promise.all([human(t), human(t), human(t)]);
    const tokens = await Promise.all(victims.map(approved));
    const [header, payload] = (await approved(attacker)).token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const forge = (jti: unknown) => `${header}.${Buffer.from(JSON.stringify({ ...claims, jti })).toString('base64url')}.${Buffer.alloc(64, 7).toString('base64url')}`;
    const poisons = [{ a: 1 }, true, ['x', 'y'], 'a\u0000b', 7, 'x'.repeat(64)].map(forge);
    const answers = await Promise.all([...poisons.map((p) => inject(attacker, p)), ...victims.map((v, i) => inject(v, tokens[i].token))]);
    expect(answers.map((a) => [a.statusCode, a.json()])).toEqual([
      ...poisons.map(() => [200, { valid: false, reason: 'invalid_signature' }]),
      ...tokens.map((tok) => [200, expect.objectContaining({ valid: true, stepUpId: tok.id })]),
    ]);
  });

  it('an ask under another hash does not take the token’s turn in a batch: asked without a hash it is decided in the next batch, asked by its hash it is answered at once and left to the signed path', async () => {
    const consumer = t.app.get(TokenConsumer);
    // The signed path asks without a hash: a forged copy asked first does not decide it.
    {
      const h = await human(t);
      const { id, token } = await approved(h);
      const jti = decodeJwt(token).jti!;
      const asks = [consumer.consume(h.tenant.appId, jti, hashSecret(`${token}x`)), consumer.consume(h.tenant.appId, jti, null)];
      expect((await Promise.all(asks)).map((r) => r?.id ?? null)).toEqual([null, id]);
    }
    // By its hash, after a forged copy of the same jti: not consumed here (nothing is), and the
    // verification's signed path then consumes it, with a forged copy verified in the same turn.
    {
      const h = await human(t);
      const { id, token } = await approved(h);
      const jti = decodeJwt(token).jti!;
      const asks = [consumer.consume(h.tenant.appId, jti, hashSecret(`${token}x`)), consumer.consume(h.tenant.appId, jti, hashSecret(token))];
      expect((await Promise.all(asks)).map((r) => r?.id ?? null)).toEqual([null, null]);
      expect((await row(id)).consumed_at).toBeNull();
      const forged = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BA' : 'AA'}`;
      const answers = await Promise.all([inject(h, forged), inject(h, token)]);
      expect(answers.map((a) => a.json())).toEqual([{ valid: false, reason: 'invalid_signature' }, expect.objectContaining({ valid: true, stepUpId: id })]);
    }
    // The same string asked twice at once: its first asker only.
    const h = await human(t);
    const { id, token } = await approved(h);
    const jti = decodeJwt(token).jti!;
    expect((await Promise.all([consumer.consume(h.tenant.appId, jti, hashSecret(token)), consumer.consume(h.tenant.appId, jti, hashSecret(token))])).map((r) => r?.id ?? null)).toEqual([id, null]);
  });

  it('forged copies of one jti under many hashes cost one batch, not one each: another app’s verification in the same turn is not held behind them', async () => {
    const consumer = t.app.get(TokenConsumer);
    const attacker = await human(t);
    const victim = await human(t);
    const [mine, theirs] = await Promise.all([approved(attacker), approved(victim)]);
    const jti = decodeJwt(mine.token).jti!;
    const batches = vi.spyOn(consumer as unknown as { write(batch: unknown[]): Promise<void> }, 'write');
    try {
      const forged = Array.from({ length: 40 }, (_, i) => consumer.consume(attacker.tenant.appId, jti, hashSecret(`${mine.token}${i}`)));
      const victims = consumer.consume(victim.tenant.appId, decodeJwt(theirs.token).jti!, hashSecret(theirs.token));
      expect((await Promise.all(forged)).every((r) => r === null)).toBe(true);
      expect((await victims)?.id).toBe(theirs.id);
      expect(batches).toHaveBeenCalledTimes(1);
    } finally {
      batches.mockRestore();
    }
    expect((await row(mine.id)).consumed_at).toBeNull();
  });

  it('N concurrent verifications of one token, by its hash: exactly one valid, the others already_used, one consumed audit event', async () => {
    const h = await human(t);
    const { id, token } = await approved(h);
    const results = await Promise.all(Array.from({ length: 30 }, () => verify(h, token)));
    expect(results.filter((r) => r.body.valid === true)).toHaveLength(1);
    expect(results.filter((r) => r.body.valid === false).map((r) => r.body.reason)).toEqual(Array(29).fill('already_used'));
    const events = (await t.http.get('/v1/audit-events?type=mfa_proxy_token.consumed').set(bearer(h.tenant.apiKey)).expect(200)).body.events;
    expect(events.map((e: { resource: string }) => e.resource)).toEqual(['drive://q3.pdf']);
    expect((await row(id)).consumed_at).not.toBeNull();
  });
});
