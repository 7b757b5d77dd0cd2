import { Injectable } from '@nestjs/common';
import { DataSource, In, IsNull, type EntityManager } from 'typeorm';
import type { SqliteSession } from '../../database/sqlite-serial.js';
import { AppApiKeyEntity, AppEntity } from './app.entity.js';

@Injectable()
export class AppsRepository {
  constructor(readonly ds: DataSource) {}

  findApp(id: string): Promise<AppEntity | null> {
    return this.ds.getRepository(AppEntity).findOneBy({ id });
  }

  async createWithKey(app: AppEntity, key: AppApiKeyEntity): Promise<void> {
    await this.ds.transaction(async (m) => {
      await m.insert(AppEntity, app);
      await m.insert(AppApiKeyEntity, key);
    });
  }

  /** PostgreSQL: true when the app `appId` (an SQL expression) has no webhookUrl, as withoutWebhook reads it, in the caller's statement. */
  withoutWebhookSql(appId: string): string {
    return `EXISTS (SELECT 1 FROM apps WHERE id = ${appId} AND (webhook_url IS NULL OR webhook_url = ''))`;
  }

  /**
   * Of `ids`, the apps without a webhook URL, read in the caller's transaction (after the caller's
   * clock reading). Written out: it runs in every transaction that adds a batch of events.
   */
  async withoutWebhook(m: EntityManager, ids: string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const postgres = this.ds.options.type === 'postgres';
    const rows: { id: string }[] = await m.query(
      postgres
        ? "SELECT id FROM apps WHERE id = ANY($1::varchar[]) AND (webhook_url IS NULL OR webhook_url = '')"
        : `SELECT id FROM apps WHERE id IN (${ids.map(() => '?').join(', ')}) AND (webhook_url IS NULL OR webhook_url = '')`,
      postgres ? [ids] : ids,
    );
    return new Set(rows.map((r) => r.id));
  }

  /** SQLite: withoutWebhook in the caller's synchronous transaction (onSqliteConnection), one prepared statement for any number of ids. */
  withoutWebhookSqlite(db: SqliteSession, ids: string[]): Set<string> {
    if (ids.length === 0) return new Set();
    const rows = db.all<{ id: string }>("SELECT id FROM apps WHERE id IN (SELECT value FROM json_each(?)) AND (webhook_url IS NULL OR webhook_url = '')", JSON.stringify(ids));
    return new Set(rows.map((r) => r.id));
  }

  findByResource(resource: string): Promise<AppEntity | null> {
    return this.ds.getRepository(AppEntity).findOneBy({ resource });
  }

  async update(id: string, patch: Partial<AppEntity>): Promise<void> {
    await this.ds.getRepository(AppEntity).update({ id }, patch);
  }

  activeKeys(appId: string): Promise<AppApiKeyEntity[]> {
    return this.ds.getRepository(AppApiKeyEntity).find({ where: { appId, revokedAt: IsNull() }, order: { createdAt: 'ASC' } });
  }

  /** Of these key ids, those not revoked (read 1,000 at a time: bind parameters are bounded). */
  async activeKeyIds(keyIds: string[]): Promise<Set<string>> {
    const active = new Set<string>();
    for (let i = 0; i < keyIds.length; i += 1_000) {
      const rows = await this.ds.getRepository(AppApiKeyEntity).find({ select: { id: true }, where: { id: In(keyIds.slice(i, i + 1_000)), revokedAt: IsNull() } });
      for (const r of rows) active.add(r.id);
    }
    return active;
  }

  findActiveKeyByHash(keyHash: string): Promise<AppApiKeyEntity | null> {
    return this.ds.getRepository(AppApiKeyEntity).findOneBy({ keyHash, revokedAt: IsNull() });
  }

  insertKey(m: EntityManager, key: AppApiKeyEntity): Promise<unknown> {
    return m.insert(AppApiKeyEntity, key);
  }

  /** Revokes one key of one app; returns whether it existed and was active. */
  async revokeKey(m: EntityManager, appId: string, keyId: string, now: number): Promise<boolean> {
    const res = await m.update(AppApiKeyEntity, { id: keyId, appId, revokedAt: IsNull() }, { revokedAt: now });
    return (res.affected ?? 0) > 0;
  }
}
