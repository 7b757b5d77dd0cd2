import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, MoreThan } from 'typeorm';
import { Clock } from '../../common/clock.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { isUniqueViolation } from '../../database/errors.js';
import { AuditLog } from '../../common/audit-log.js';
import { Cascades, CascadeScope } from '../../common/cascade.js';
import { RevokedTokenEntity } from './revoked-token.entity.js';

const TOKEN_REVOKED = 'token.revoked';

/**
 * Agent tokens revoked before expiry, held in memory on every instance so the guard checks
 * revocation without a query. The database is the source of truth: loaded at boot and after a
 * pub/sub reconnect; every instance adds a revocation when it is published.
 */
@Injectable()
export class RevocationList implements OnApplicationBootstrap {
  private readonly revoked = new Map<string, number>();

  constructor(
    private readonly ds: DataSource,
    private readonly clock: Clock,
    private readonly pubsub: PubSub,
    private readonly audit: AuditLog,
    private readonly cascades: Cascades,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.pubsub.subscribe(TOKEN_REVOKED, (m) => this.remember(String(m.jti), Number(m.exp)));
    this.pubsub.subscribe('cache.reset', () => void this.load().catch(() => undefined));
    await this.load();
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

  private remember(jti: string, exp: number): void {
    const now = this.clock.now();
    if (exp > now) this.revoked.set(jti, exp);
    if (this.revoked.size % 1000 === 0) for (const [k, v] of this.revoked) if (v <= now) this.revoked.delete(k);
  }

  private async load(): Promise<void> {
    const rows = await this.ds.getRepository(RevokedTokenEntity).find({ where: { expiresAt: MoreThan(this.clock.now()) } });
    for (const row of rows) this.remember(row.jti, row.expiresAt);
  }
}
