import { Injectable } from '@nestjs/common';
import { DataSource, IsNull, MoreThan, type EntityManager } from 'typeorm';
import { AuditEventEntity, AuditHeadEntity } from './audit-event.entity.js';
import { chainHash, GENESIS_HASH } from './chain.js';

export interface AuditFilter {
  userId?: string;
  agentId?: string;
  taskId?: string;
  type?: string;
}

@Injectable()
export class AuditRepository {
  constructor(readonly ds: DataSource) {}

  insert(m: EntityManager, e: Partial<AuditEventEntity>): Promise<unknown> {
    return m.insert(AuditEventEntity, e);
  }

  async appsWithUnsealed(limit: number): Promise<string[]> {
    const rows: { app_id: string }[] = await this.ds.createQueryBuilder().select('DISTINCT e.app_id', 'app_id').from(AuditEventEntity, 'e').where('e.seq IS NULL').limit(limit).getRawMany();
    return rows.map((r) => r.app_id);
  }

  /**
   * Chains the app's unsealed events, in (at, id) order, after its head. The head row is locked
   * (FOR UPDATE on PostgreSQL; SQLite has one writer), so instances seal one app one at a time,
   * while appending never waits on this.
   */
  async seal(appId: string, batch = 500): Promise<number> {
    return this.ds.transaction(async (m) => {
      await m.createQueryBuilder().insert().into(AuditHeadEntity).values({ appId, lastSeq: 0, lastHash: GENESIS_HASH }).orIgnore().execute();
      const q = m.createQueryBuilder(AuditHeadEntity, 'h').where('h.app_id = :appId', { appId });
      if (this.ds.options.type === 'postgres') q.setLock('pessimistic_write');
      const head = (await q.getOne())!;
      const events = await m.find(AuditEventEntity, { where: { appId, seq: IsNull() }, order: { at: 'ASC', id: 'ASC' }, take: batch });
      let { lastSeq, lastHash } = head;
      for (const e of events) {
        const seq = lastSeq + 1;
        const hash = chainHash(lastHash, e, seq);
        await m.update(AuditEventEntity, { id: e.id, seq: IsNull() }, { seq, prevHash: lastHash, hash });
        lastSeq = seq;
        lastHash = hash;
      }
      if (events.length) await m.update(AuditHeadEntity, { appId }, { lastSeq, lastHash });
      return events.length;
    });
  }

  head(appId: string): Promise<AuditHeadEntity | null> {
    return this.ds.getRepository(AuditHeadEntity).findOneBy({ appId });
  }

  /** Sealed events in seq order after `afterSeq`. */
  page(appId: string, afterSeq: number, limit: number, filter: AuditFilter = {}): Promise<AuditEventEntity[]> {
    const where = Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined));
    return this.ds.getRepository(AuditEventEntity).find({ where: { appId, seq: MoreThan(afterSeq), ...where }, order: { seq: 'ASC' }, take: limit });
  }

  async allAppIds(): Promise<string[]> {
    const rows: { app_id: string }[] = await this.ds.createQueryBuilder().select('h.app_id', 'app_id').from(AuditHeadEntity, 'h').getRawMany();
    return rows.map((r) => r.app_id);
  }
}
