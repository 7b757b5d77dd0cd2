import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import type { OutboxEntity } from './outbox.entity.js';
import { OutboxRepository, type DeliveryOutcome } from './outbox.repository.js';
import { OutboxService } from './outbox.service.js';
import { postOutbound } from './outbound-http.js';
import { failedAttempt } from './retry.js';

const TICK_MS = 500;
const BATCH = 50;
const CLAIM_MARGIN_MS = 5_000;

/**
 * Delivers CIBA pings (CIBA Core §10.2) from the outbox: rows of delivery status `ping`, written in
 * the transaction that decided the step-up (StepUpsBackchannel). Each is one POST of its sealed
 * body with `Authorization: Bearer <client_notification_token>` to the agent's endpoint, through
 * the same SSRF-guarded client as webhooks (postOutbound: resolved and checked at call time, no
 * redirects), retried with the webhooks' backoff and attempt limit; at least once, claims lapse
 * after a crash. Pings are few (one per decided CIBA request), so this is a plain claim loop
 * beside the webhook dispatcher, which never sees these rows. The token is never logged.
 */
@Injectable()
export class PingDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(PingDispatcher.name);
  private readonly instanceId = `ping-${randomUUID()}`;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly aborter = new AbortController();

  constructor(
    private readonly repo: OutboxRepository,
    private readonly outbox: OutboxService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    // Woken by commits that added a ping row here; the timer finds those of other instances.
    this.repo.onAddedCommitted(() => this.tick(), 'ping');
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.aborter.abort();
    await this.running;
    await this.repo.releaseDirectClaims('ping', this.instanceId).catch(() => undefined);
  }

  tick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.round();
      } while (this.again && !this.stopped);
    })()
      .catch((err) => this.logger.warn({ err: String(err) }, 'ping dispatch failed'))
      .finally(() => (this.running = null));
  }

  private async round(): Promise<void> {
    const now = this.clock.now();
    const rows = await this.repo.claimDirect('ping', now, now + this.config.webhooks.timeoutMs + CLAIM_MARGIN_MS, this.instanceId, BATCH);
    if (rows.length === 0) return;
    const outcomes = (await Promise.all(rows.map((row) => this.deliver(row)))).filter((o): o is DeliveryOutcome => o !== null);
    await this.repo.finishMany(this.instanceId, outcomes);
    if (rows.length === BATCH) this.again = true;
  }

  /** One attempt; null when shutting down (the row is handed back). */
  private async deliver(row: OutboxEntity): Promise<DeliveryOutcome | null> {
    let data: Record<string, unknown>;
    try {
      data = this.outbox.deliverable(row).data;
    } catch {
      return { id: row.id, status: 'ping_failed', deliveredAt: null, attempts: row.attempts + 1, lastError: 'payload cannot be decrypted', nextAttemptAt: null };
    }
    try {
      const res = await postOutbound(new URL(String(data.endpoint)), String(data.pingBody), {
        'content-type': 'application/json',
        'user-agent': 'mfa-proxy-ciba/1',
        authorization: `Bearer ${String(data.pingBearer)}`,
      }, { timeoutMs: this.config.webhooks.timeoutMs, allowPrivate: this.config.webhookAllowPrivate, maxBytes: 1024, signal: this.aborter.signal });
      if (res.status >= 200 && res.status < 300) return { id: row.id, status: 'delivered', deliveredAt: this.clock.now(), attempts: row.attempts + 1, lastError: null, nextAttemptAt: null };
      return this.retryLater(row, `HTTP ${res.status}`);
    } catch (err) {
      if (this.stopped) return null;
      return this.retryLater(row, err instanceof Error ? err.message : 'delivery failed');
    }
  }

  private retryLater(row: OutboxEntity, error: string): DeliveryOutcome {
    return failedAttempt(row, error, { now: this.clock.now(), maxAttempts: this.config.webhooks.maxAttempts, baseMs: this.config.webhooks.retryBaseMs, retry: 'ping', failed: 'ping_failed' });
  }
}
