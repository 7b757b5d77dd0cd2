/**
 * Bench-only seeding of approved step-ups and their MFA-proxy tokens, so every measured verify
 * consumes a fresh, valid token. Minting through the API at bench volume is impossible by design
 * (a human approves each one, and caps apply), so this child process boots the service's own
 * AppModule (from the build under test, with the service's environment; it does not listen),
 * takes its MfaProxyTokenMinter (the service's signing key) and DataSource, inserts the
 * `step_ups` rows as an approval + hand-out would leave them (status approved, token_jti set, and
 * token_hash where the build has it, consumed_at null) in one transaction, writes the tokens to a file (one per line), and exits
 * before the round starts. Run by bench/run.ts and bench/soak.ts through runIpc().
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serveIpcOnce } from './lib/procs.js';

export interface SeedBatch {
  appId: string;
  userId: string;
  agentId: string;
  count: number;
  /** Where the tokens go, one per line. */
  out: string;
}

export interface SeedRequest {
  serviceDir: string;
  env: Record<string, string>;
  action: string;
  resource: string | null;
  details: Record<string, unknown>;
  batches: SeedBatch[];
  /**
   * PostgreSQL: VACUUM and CHECKPOINT after seeding (the bench, which seeds between rounds), so
   * the work the bulk insert leaves behind does not land in the next round. Not the soak, which
   * seeds while its load runs: a checkpoint there would stall the load it measures.
   */
  settle?: boolean;
}

export interface SeedResult {
  minted: number;
  ms: number;
}

/* Minimal shapes of the service classes used here (the bench does not compile against src/). */
interface Minter { mint(s: Record<string, unknown>): Promise<{ token: string; jti: string; expiresAt: number }> }
interface EntityManagerLike { insert(target: unknown, rows: unknown[]): Promise<unknown> }
interface DataSourceLike {
  transaction<T>(fn: (m: EntityManagerLike) => Promise<T>): Promise<T>;
  query(sql: string): Promise<unknown>;
  getMetadata(target: unknown): { findColumnWithPropertyPath(path: string): unknown };
  options?: { type?: string };
}
interface AppContext { get<T>(token: unknown, options?: { strict: boolean }): T; close(): Promise<void> }

const INSERT_CHUNK = 400;
const MINT_CONCURRENCY = 512;

async function load(serviceDir: string, rel: string): Promise<Record<string, unknown>> {
  return (await import(pathToFileURL(join(serviceDir, rel)).href)) as Record<string, unknown>;
}

async function seed(req: SeedRequest): Promise<SeedResult> {
  const started = Date.now();
  const dir = req.serviceDir;
  // The service's own copies of Nest and reflect-metadata, so its decorators and ours agree.
  await load(dir, 'node_modules/reflect-metadata/Reflect.js');
  const { NestFactory } = (await load(dir, 'node_modules/@nestjs/core/index.js')) as { NestFactory: { createApplicationContext(m: unknown, o: unknown): Promise<AppContext> } };
  const { loadConfig } = (await load(dir, 'dist/src/config/config.js')) as { loadConfig(env: Record<string, string>): unknown };
  const { AppModule } = (await load(dir, 'dist/src/app.module.js')) as { AppModule: { forRoot(c: unknown): unknown } };
  const { MfaProxyTokenMinter } = await load(dir, 'dist/src/modules/step-ups/mfa-proxy-token.js');
  const { StepUpsRepository } = await load(dir, 'dist/src/modules/step-ups/step-ups.repository.js');
  const { StepUpEntity } = await load(dir, 'dist/src/modules/step-ups/step-up.entity.js');
  const { hashDetails } = (await load(dir, 'dist/src/common/canonical-json.js')) as { hashDetails(d: unknown): string };
  const { hashSecret } = (await load(dir, 'dist/src/common/crypto/tokens.js')) as { hashSecret(s: string): string };

  const ctx = await NestFactory.createApplicationContext(AppModule.forRoot(loadConfig(req.env)), { logger: ['error'], abortOnError: false });
  let minted = 0;
  try {
    const minter = ctx.get<Minter>(MfaProxyTokenMinter, { strict: false });
    const ds = ctx.get<{ ds: DataSourceLike }>(StepUpsRepository, { strict: false }).ds;
    const detailsHash = hashDetails(req.details);
    // A build that stores the issued token's hash at hand-out (step_ups.token_hash) gets it here too.
    const storesTokenHash = ds.getMetadata(StepUpEntity).findColumnWithPropertyPath('tokenHash') !== undefined;
    for (const batch of req.batches) {
      const now = Date.now();
      const rows: Record<string, unknown>[] = [];
      const tokens: string[] = [];
      for (let i = 0; i < batch.count; i += MINT_CONCURRENCY) {
        const n = Math.min(MINT_CONCURRENCY, batch.count - i);
        const part = await Promise.all(
          Array.from({ length: n }, async () => {
            const row: Record<string, unknown> = {
              id: `stp_${randomBytes(16).toString('base64url')}`,
              appId: batch.appId, agentId: batch.agentId, userId: batch.userId, model: 'bench-model', taskId: null,
              action: req.action, resource: req.resource, details: req.details, detailsHash,
              bindingMessage: null, bindingCode: '000000', methods: ['totp'], grantType: 'token', grantScopes: [], grantDuration: 0,
              agentJkt: null, agentScopes: ['files:read'], initiator: 'agent', workerTaskId: null,
              status: 'approved', reason: null, method: 'totp', amr: ['otp'],
              approvalTokenHash: randomBytes(32).toString('base64url'), approvalTokenEnc: 'bench-seeded', idempotencyKey: null,
              requestHash: randomBytes(32).toString('base64url'), webauthnNonce: null, webauthnNonceExpiresAt: null, totpFailures: 0,
              tokenJti: null, tokenDeliveredAt: now, tokenExpiresAt: null, consumedAt: null,
              createdAt: now - 2_000, expiresAt: now + 300_000, decidedAt: now - 1_000,
            };
            const t = await minter.mint(row);
            row.tokenJti = t.jti;
            row.tokenExpiresAt = t.expiresAt;
            if (storesTokenHash) row.tokenHash = hashSecret(t.token);
            return { row, token: t.token };
          }),
        );
        for (const p of part) (rows.push(p.row), tokens.push(p.token));
      }
      await ds.transaction(async (m) => {
        for (let i = 0; i < rows.length; i += INSERT_CHUNK) await m.insert(StepUpEntity, rows.slice(i, i + INSERT_CHUNK));
      });
      writeFileSync(batch.out, tokens.join('\n') + '\n');
      minted += tokens.length;
    }
    // A real step_ups table grows one approval at a time and autovacuum keeps its statistics;
    // this one just grew by 100k rows in one transaction, and an autovacuum ANALYZE that ran
    // while they were uncommitted leaves PostgreSQL believing it empty (it then walks the whole
    // table per token: seconds per statement, the floor's and the service's alike). Analyse it.
    // Between bench rounds (`settle`), VACUUM too, and a checkpoint: otherwise the autovacuum that
    // 100k inserted rows trigger, and the writing out of the pages they dirtied, fall inside the
    // measured round (whichever server it measures), and the rounds vary by half from that alone.
    if (ds.options?.type === 'postgres') {
      await ds.query(req.settle ? 'VACUUM (ANALYZE) step_ups' : 'ANALYZE step_ups');
      // Needs a superuser or pg_checkpoint; without it the round simply pays as before.
      if (req.settle) await ds.query('CHECKPOINT').catch(() => undefined);
    }
  } finally {
    await ctx.close();
  }
  return { minted, ms: Date.now() - started };
}

serveIpcOnce(seed);
