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
    return m.insert(AuditEventEntity, e as never);
  }

  /** Request events, many in one statement. */
  insertMany(rows: Partial<AuditEventEntity>[]): Promise<unknown> {
    return this.ds.manager.insert(AuditEventEntity, rows as never);
  }

  /** Apps with unsealed events: read from the partial index `ix_audit_events_unsealed`, which holds only those rows. */
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
      const rows: { id: string; seq: number; prevHash: string; hash: string }[] = [];
      for (const e of events) {
        const seq = lastSeq + 1;
        const hash = chainHash(lastHash, e, seq);
        rows.push({ id: e.id, seq, prevHash: lastHash, hash });
        lastSeq = seq;
        lastHash = hash;
      }
      // One statement per chunk (CASE on id), portable to both databases, instead of one per row.
      for (let i = 0; i < rows.length; i += 100) await this.applyChain(m, rows.slice(i, i + 100));
      if (events.length) await m.update(AuditHeadEntity, { appId }, { lastSeq, lastHash });
      return events.length;
    });
  }

  private async applyChain(m: EntityManager, rows: { id: string; seq: number; prevHash: string; hash: string }[]): Promise<void> {
    const params: Record<string, string | number> = {};
    const cases = { seq: [] as string[], prev: [] as string[], hash: [] as string[] };
    rows.forEach((r, i) => {
      params[`i${i}`] = r.id;
      params[`s${i}`] = r.seq;
      params[`p${i}`] = r.prevHash;
      params[`h${i}`] = r.hash;
      cases.seq.push(`WHEN :i${i} THEN :s${i}`);
      cases.prev.push(`WHEN :i${i} THEN :p${i}`);
      cases.hash.push(`WHEN :i${i} THEN :h${i}`);
    });
    const numeric = this.ds.options.type === 'postgres' ? '::bigint' : '';
    await m
      .createQueryBuilder()
      .update(AuditEventEntity)
      .set({
        seq: () => `(CASE id ${cases.seq.join(' ')} END)${numeric}`,
        prevHash: () => `CASE id ${cases.prev.join(' ')} END`,
        hash: () => `CASE id ${cases.hash.join(' ')} END`,
      })
      .where(`id IN (${rows.map((_, i) => `:i${i}`).join(', ')}) AND seq IS NULL`)
      .setParameters(params)
      .execute();
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
