import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { DataSource, In } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { AppsService } from '../apps/apps.service.js';
import { OutboxEntity } from './outbox.entity.js';
import { postOutbound } from './outbound-http.js';
import { signWebhook } from './webhook-signature.js';

const TICK_MS = 250;
const BATCH = 20;

/**
 * Delivers the outbox to each app's webhookUrl, at least once: claims due rows (SKIP LOCKED on
 * PostgreSQL, so N instances share the work), POSTs them signed, and on failure retries with
 * exponential backoff and jitter up to WEBHOOK_MAX_ATTEMPTS. A crashed instance's claims lapse.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WebhookDispatcher.name);
  readonly instanceId = randomUUID();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly ds: DataSource,
    private readonly apps: AppsService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
    // Hand back what this instance claimed but did not finish.
    await this.ds
      .createQueryBuilder()
      .update(OutboxEntity)
      .set({ claimedUntil: null, claimedBy: null })
      .where('claimed_by = :me AND delivery_status = :pending', { me: this.instanceId, pending: 'pending' })
      .execute()
      .catch(() => undefined);
  }

  tick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.deliverDue()
      .catch((err) => this.logger.warn({ err: String(err) }, 'webhook dispatch failed'))
      .finally(() => (this.running = null));
    return this.running;
  }

  private async deliverDue(): Promise<void> {
    for (const row of await this.claim()) {
      if (this.stopped) break;
      await this.deliver(row);
    }
  }

  private async claim(): Promise<OutboxEntity[]> {
    const now = this.clock.now();
    const until = now + this.config.webhooks.timeoutMs + 5_000;
    const pg = this.ds.options.type === 'postgres';
    const due = `SELECT id FROM outbox WHERE delivery_status = 'pending' AND next_attempt_at <= ${pg ? '$3' : '?'} AND (claimed_until IS NULL OR claimed_until < ${pg ? '$3' : '?'}) ORDER BY created_at, id LIMIT ${BATCH}`;
    if (pg) {
      await this.ds.query(`UPDATE outbox SET claimed_until = $1, claimed_by = $2 WHERE id IN (${due} FOR UPDATE SKIP LOCKED)`, [until, this.instanceId, now]);
    } else {
      await this.ds.query(`UPDATE outbox SET claimed_until = ?, claimed_by = ? WHERE id IN (${due})`, [until, this.instanceId, now, now]);
    }
    return this.ds.getRepository(OutboxEntity).find({ where: { claimedBy: this.instanceId, claimedUntil: until, deliveryStatus: 'pending' }, order: { createdAt: 'ASC' } });
  }

  private async deliver(row: OutboxEntity): Promise<void> {
    const target = await this.apps.webhookTarget(row.appId);
    if (!target) return this.finish(row, { deliveryStatus: 'no_endpoint' });
    const body = JSON.stringify(row.payload);
    const timestamp = Math.floor(this.clock.now() / 1000);
    try {
      const status = await this.post(new URL(target.url), body, {
        'content-type': 'application/json',
        'user-agent': 'mfa-proxy-webhooks/1',
        'webhook-id': row.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signWebhook(target.secrets, row.id, timestamp, body),
      });
      if (status >= 200 && status < 300) return this.finish(row, { deliveryStatus: 'delivered', deliveredAt: this.clock.now(), attempts: row.attempts + 1, lastError: null });
      await this.retryLater(row, `HTTP ${status}`);
    } catch (err) {
      await this.retryLater(row, err instanceof Error ? err.message : 'delivery failed');
    }
  }

  private async retryLater(row: OutboxEntity, error: string): Promise<void> {
    const attempts = row.attempts + 1;
    if (attempts >= this.config.webhooks.maxAttempts) return this.finish(row, { deliveryStatus: 'failed', attempts, lastError: error.slice(0, 300) });
    const backoff = Math.min(this.config.webhooks.retryBaseMs * 2 ** (attempts - 1), 3_600_000);
    const jitter = backoff * (0.8 + Math.random() * 0.4);
    await this.finish(row, { attempts, lastError: error.slice(0, 300), nextAttemptAt: this.clock.now() + Math.round(jitter) });
  }

  private async finish(row: OutboxEntity, patch: Partial<Omit<OutboxEntity, "payload">>): Promise<void> {
    await this.ds.getRepository(OutboxEntity).update({ id: row.id, claimedBy: this.instanceId }, { ...patch, claimedBy: null, claimedUntil: null });
  }

  private async post(url: URL, body: string, headers: Record<string, string>): Promise<number> {
    return (await postOutbound(url, body, headers, { timeoutMs: this.config.webhooks.timeoutMs, allowPrivate: this.config.webhookAllowPrivate, maxBytes: 1024 })).status;
  }

  /** Manual retry of a failed (or pending) delivery, from the app. */
  async retry(appId: string, id: string): Promise<boolean> {
    const res = await this.ds.getRepository(OutboxEntity).update(
      { appId, id, deliveryStatus: In(['failed', 'pending', 'no_endpoint']) },
      { deliveryStatus: 'pending', nextAttemptAt: this.clock.now(), claimedBy: null, claimedUntil: null },
    );
    return (res.affected ?? 0) > 0;
  }
}
