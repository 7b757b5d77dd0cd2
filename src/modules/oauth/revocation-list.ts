import { Inject, Injectable, Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, MoreThan } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { isUniqueViolation } from '../../database/errors.js';
import { AuditLog } from '../../common/audit-log.js';
import { Cascades, CascadeScope } from '../../common/cascade.js';
import { RevokedTokenEntity } from './revoked-token.entity.js';

const TOKEN_REVOKED = 'token.revoked';

/**
 * How far back each re-read of the revocations looks past the previous one's start: `revoked_at` is
 * written by the revoking instance's clock, and its transaction commits a little after it. A
 * revocation stamped by a clock more than this behind the reader's is left to pub/sub (and to the
 * next reconnect or restart): instances' clocks must agree far better than that anyway, since
 * tokens' `iat` is checked with 5 s of tolerance.
 */
const SYNC_OVERLAP_MS = 60_000;

/**
 * Agent tokens revoked before expiry, held in memory on every instance so the guard checks
 * revocation without a query. The database is the source of truth: loaded at boot and after a
 * pub/sub reconnect; every instance adds a revocation when it is published, and re-reads the
 * revocations made since its last reading every PRINCIPAL_CACHE_SECONDS (1 s at least), so a
 * message that never arrived (the revoking instance cut off from Redis: its publish fails, and the
 * others never reconnect) leaves a revoked token working no longer than a suspended agent's cached
 * state does.
 */
@Injectable()
export class RevocationList implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RevocationList.name);
  private readonly revoked = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  /** The start of the last reading that succeeded (this instance's clock). */
  private readSince = 0;
  private reading: Promise<void> | null = null;

  constructor(
    private readonly ds: DataSource,
    private readonly clock: Clock,
    private readonly pubsub: PubSub,
    private readonly audit: AuditLog,
    private readonly cascades: Cascades,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.pubsub.subscribe(TOKEN_REVOKED, (m) => this.remember(String(m.jti), Number(m.exp)));
    this.pubsub.subscribe('cache.reset', () => void this.load().catch(() => undefined));
    await this.load();
    this.timer = setInterval(() => void this.sync(), Math.max(1, this.config.principalCacheSeconds) * 1000);
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.reading;
  }

  isRevoked(jti: string): boolean {
    const exp = this.revoked.get(jti);
    return exp !== undefined && exp > this.clock.now();
  }

  async revoke(entry: { jti: string; appId: string; agentId: string; userId: string; expiresAt: number }): Promise<void> {
    const { userId, ...row } = entry;
    const now = this.clock.now();
    const scope = new CascadeScope();
    try {
      await this.ds.transaction(async (m) => {
        await m.insert(RevokedTokenEntity, { ...row, revokedAt: now });
        await this.audit.record(m, { appId: entry.appId, type: 'token.revoked', outcome: 'success', agentId: entry.agentId, userId, resource: entry.jti });
        // What the token started ends with it (tasks: a task never outlives the authority that created it).
        await this.cascades.emit(m, scope, { type: 'token.revoked', appId: entry.appId, agentId: entry.agentId, jti: entry.jti, now });
      });
    } catch (err) {
      if (!isUniqueViolation(err)) throw err; // revoking twice is fine (RFC 7009 §2.2)
    }
    await scope.committed();
    this.remember(entry.jti, entry.expiresAt);
    await this.pubsub.publish(TOKEN_REVOKED, { jti: entry.jti, exp: entry.expiresAt });
  }

  /** Holds a revocation until its token expires; expired ones are swept as the map grows (a jti already held changes nothing: readings overlap). */
  private remember(jti: string, exp: number): void {
    const now = this.clock.now();
    if (exp <= now || this.revoked.has(jti)) return;
    this.revoked.set(jti, exp);
    if (this.revoked.size % 1000 === 0) for (const [k, v] of this.revoked) if (v <= now) this.revoked.delete(k);
  }

  /** Every revocation still in force (boot, and a pub/sub reconnect: messages may have been missed). */
  private async load(): Promise<void> {
    const started = this.clock.now();
    const rows = await this.ds.getRepository(RevokedTokenEntity).find({ where: { expiresAt: MoreThan(started) } });
    for (const row of rows) this.remember(row.jti, row.expiresAt);
    this.readSince = Math.max(this.readSince, started);
  }

  /** The revocations made since the last reading, and in the overlap before it (ix_revoked_tokens_revoked_at): a few rows, whatever the history. */
  private sync(): Promise<void> {
    this.reading ??= (async () => {
      const started = this.clock.now();
      try {
        const rows = await this.ds.getRepository(RevokedTokenEntity).find({ select: { jti: true, expiresAt: true }, where: { revokedAt: MoreThan(this.readSince - SYNC_OVERLAP_MS) } });
        for (const row of rows) this.remember(row.jti, row.expiresAt);
        this.readSince = started;
      } catch (err) {
        this.logger.warn({ err: String(err) }, 'revoked tokens not re-read; retrying at the next interval');
      } finally {
        this.reading = null;
      }
    })();
    return this.reading;
  }
}
