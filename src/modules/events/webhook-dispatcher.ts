import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { AppsService } from '../apps/apps.service.js';
import type { OutboxEntity } from './outbox.entity.js';
import { OutboxRepository } from './outbox.repository.js';
import { OutboxService } from './outbox.service.js';
import { postOutbound } from './outbound-http.js';
import { signWebhook } from './webhook-signature.js';

const TICK_MS = 250;
/** Requests one instance has open to one app's endpoint at most: a hanging endpoint holds only these. */
export const WEBHOOK_PER_APP_CONCURRENCY = 4;
/** Requests one instance has open in all. */
const MAX_IN_FLIGHT = 64;
/** Apps considered per claim (round robin beyond that). */
const APPS_PER_CLAIM = 1_000;

/**
 * Delivers the outbox to each app's webhookUrl, at least once: claims due rows (SKIP LOCKED on
 * PostgreSQL, so N instances share the work), POSTs them signed, and on failure retries with
 * exponential backoff and jitter up to WEBHOOK_MAX_ATTEMPTS. A crashed instance's claims lapse.
 *
 * Deliveries run concurrently, and no app can hold up another's (API.md v1.1, issue 11 item 3):
 * each claim takes at most WEBHOOK_PER_APP_CONCURRENCY rows per app minus what this instance
 * already has in flight to it, skips apps at that limit, and goes round the apps with due rows
 * (found by an index skip scan, not by reading a backlog), so one app's hanging endpoint or long
 * backlog never fills the instance's capacity.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WebhookDispatcher.name);
  readonly instanceId = randomUUID();
  private timer: NodeJS.Timeout | null = null;
  private claiming: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly perApp = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Aborts requests still open at shutdown; their rows are handed back, not counted as attempts. */
  private readonly aborter = new AbortController();
  /** The app served last by the previous claim: the next one starts after it. */
  private lastServed = '';

  constructor(
    private readonly repo: OutboxRepository,
    private readonly outbox: OutboxService,
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
    this.aborter.abort();
    await this.claiming?.catch(() => undefined);
    await Promise.allSettled([...this.inFlight]);
    // Hand back what this instance claimed but did not finish.
    await this.repo.releaseClaims(this.instanceId).catch(() => undefined);
  }

  /** Requests this instance has open, in all and per app. */
  stats(): { inFlight: number; perApp: Record<string, number> } {
    return { inFlight: this.inFlight.size, perApp: Object.fromEntries(this.perApp) };
  }

  /** Claims what is due and starts delivering it; calls during a claim ask for one more. */
  tick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.claiming) {
      this.again = true;
      return this.claiming;
    }
    this.claiming = (async () => {
      do {
        this.again = false;
        await this.claimAndStart();
      } while (this.again && !this.stopped);
    })()
      .catch((err) => this.logger.warn({ err: String(err) }, 'webhook dispatch failed'))
      .finally(() => (this.claiming = null));
    return this.claiming;
  }

  private async claimAndStart(): Promise<void> {
    let capacity = MAX_IN_FLIGHT - this.inFlight.size;
    if (capacity <= 0) return;
    const now = this.clock.now();
    const pending = (await this.repo.appsWithDue(now, APPS_PER_CLAIM)).filter((appId) => (this.perApp.get(appId) ?? 0) < WEBHOOK_PER_APP_CONCURRENCY);
    if (pending.length === 0) return;
    // Round robin: start after the app served last, so with more apps than capacity each gets its turn.
    const from = pending.findIndex((appId) => appId > this.lastServed);
    const order = from <= 0 ? pending : [...pending.slice(from), ...pending.slice(0, from)];
    const wants: { appId: string; k: number }[] = [];
    for (const appId of order) {
      if (capacity <= 0) break;
      const k = Math.min(WEBHOOK_PER_APP_CONCURRENCY - (this.perApp.get(appId) ?? 0), capacity);
      wants.push({ appId, k });
      capacity -= k;
    }
    this.lastServed = wants[wants.length - 1].appId;
    const rows = await this.repo.claim(wants, now, now + this.config.webhooks.timeoutMs + 5_000, this.instanceId);
    for (const row of rows) this.start(row);
  }

  private start(row: OutboxEntity): void {
    this.perApp.set(row.appId, (this.perApp.get(row.appId) ?? 0) + 1);
    const delivery: Promise<void> = this.deliver(row)
      .catch((err) => this.logger.warn({ err: String(err), eventId: row.id }, 'webhook delivery bookkeeping failed'))
      .finally(() => {
        const left = (this.perApp.get(row.appId) ?? 1) - 1;
        if (left > 0) this.perApp.set(row.appId, left);
        else this.perApp.delete(row.appId);
        this.inFlight.delete(delivery);
        // A slot is free: the app's next due row (or another app's) need not wait for the timer.
        void this.tick();
      });
    this.inFlight.add(delivery);
  }

  private async deliver(row: OutboxEntity): Promise<void> {
    const target = await this.apps.webhookTarget(row.appId);
    if (!target) return this.repo.finish(row.id, this.instanceId, { deliveryStatus: 'no_endpoint' });
    let body: string;
    try {
      body = JSON.stringify(this.outbox.deliverable(row));
    } catch {
      // A sealed field that does not open (unknown master key, moved or tampered row): never send it half.
      return this.repo.finish(row.id, this.instanceId, { deliveryStatus: 'failed', attempts: row.attempts + 1, lastError: 'payload cannot be decrypted' });
    }
    const timestamp = Math.floor(this.clock.now() / 1000);
    try {
      const status = await this.post(new URL(target.url), body, {
        'content-type': 'application/json',
        'user-agent': 'mfa-proxy-webhooks/1',
        'webhook-id': row.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signWebhook(target.secrets, row.id, timestamp, body),
      });
      if (status >= 200 && status < 300) {
        return this.repo.finish(row.id, this.instanceId, { deliveryStatus: 'delivered', deliveredAt: this.clock.now(), attempts: row.attempts + 1, lastError: null });
      }
      await this.retryLater(row, `HTTP ${status}`);
    } catch (err) {
      // Shutting down: the row is handed back (at least once: it is delivered again later).
      if (this.stopped) return;
      await this.retryLater(row, err instanceof Error ? err.message : 'delivery failed');
    }
  }

  private async retryLater(row: OutboxEntity, error: string): Promise<void> {
    const attempts = row.attempts + 1;
    if (attempts >= this.config.webhooks.maxAttempts) return this.repo.finish(row.id, this.instanceId, { deliveryStatus: 'failed', attempts, lastError: error.slice(0, 300) });
    const backoff = Math.min(this.config.webhooks.retryBaseMs * 2 ** (attempts - 1), 3_600_000);
    const jitter = backoff * (0.8 + Math.random() * 0.4);
    await this.repo.finish(row.id, this.instanceId, { attempts, lastError: error.slice(0, 300), nextAttemptAt: this.clock.now() + Math.round(jitter) });
  }

  private async post(url: URL, body: string, headers: Record<string, string>): Promise<number> {
    const res = await postOutbound(url, body, headers, { timeoutMs: this.config.webhooks.timeoutMs, allowPrivate: this.config.webhookAllowPrivate, maxBytes: 1024, signal: this.aborter.signal });
    return res.status;
  }

  /** Manual retry of a failed (or pending) delivery, from the app. */
  retry(appId: string, id: string): Promise<boolean> {
    return this.repo.retry(appId, id, this.clock.now());
  }
}
