import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import webpush from 'web-push';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { postOutbound } from '../events/outbound-http.js';
import { retryAfterFailure } from '../events/retry.js';
import type { OutboxEntity } from '../events/outbox.entity.js';
import { OutboxRepository, type DeliveryOutcome } from '../events/outbox.repository.js';
import { AgentsRepository } from '../agents/agents.repository.js';
import { AppsService } from '../apps/apps.service.js';
import { dashboardUrl, pushEndpointProblem } from './push-endpoint.js';
import { PushService } from './push.service.js';

const TICK_MS = 500;
const CLAIM_MARGIN_MS = 5_000;
/** Pushes in flight on this instance, all push services together. */
export const MAX_IN_FLIGHT = 16;
/** Pushes in flight to one push service (origin): a hanging one holds at most these slots. */
export const MAX_IN_FLIGHT_PER_ORIGIN = 4;
/** A push whose push service is at its limit is handed back and looked at again this soon. */
const DEFER_MS = 250;

/** What the push row carries (PushService.fanOutIn): public data only. */
interface PushRow {
  subscriptionId: string;
  origin: string;
  userId: string;
  stepUpId: string;
  agentId: string;
  action: string;
  bindingCode: string;
  expiresAt: string;
}

/**
 * Delivers Web Pushes (RFC 8030) from the outbox: rows of delivery status `push`, one per
 * subscription, written in the transaction that created the step-up. Each is one POST of the
 * RFC 8291 (aes128gcm) encrypted payload with a VAPID (RFC 8292) `Authorization`, built by
 * web-push's `generateRequestDetails` and sent through the webhooks' SSRF-guarded client
 * (postOutbound: resolved and checked at call time, no redirects, bounded time and size).
 *
 * - `TTL` is the step-up's remaining lifetime (RFC 8030 §5.2): a push service never hands the
 *   prompt to the device after the step-up expired; an already expired step-up is not pushed.
 * - `Urgency: high` (RFC 8030 §5.3): a human is waiting.
 * - 404 or 410 (RFC 8030 §7.3, §8.3: the subscription expired or was removed) deletes the
 *   subscription; any other failure is retried with the webhooks' backoff and attempt limit,
 *   never past the step-up's expiry.
 * - Bounded concurrency that a hanging push service cannot exhaust: a pool of MAX_IN_FLIGHT, at
 *   most MAX_IN_FLIGHT_PER_ORIGIN per push service; every delivery ends on its own and frees its
 *   slot at once (no batch waits for its slowest member). Claims lapse after a crash; SKIP LOCKED
 *   shares the rows among instances.
 * Nothing secret is logged: not the endpoint (a capability), the keys, nor the payload.
 */
@Injectable()
export class PushDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(PushDispatcher.name);
  private readonly instanceId = `push-${randomUUID()}`;
  private timer: NodeJS.Timeout | null = null;
  private claiming: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly aborter = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly perOrigin = new Map<string, number>();

  constructor(
    private readonly repo: OutboxRepository,
    private readonly push: PushService,
    private readonly apps: AppsService,
    private readonly agents: AgentsRepository,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    // Woken by commits that added a push row here; the timer finds those of other instances.
    this.repo.onAddedCommitted(() => this.tick(), 'push');
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.aborter.abort();
    await this.claiming;
    await Promise.allSettled([...this.inFlight]);
    await this.repo.releaseDirectClaims('push', this.instanceId).catch(() => undefined);
  }

  /** Fills free slots with due pushes, soon; calls coalesce. */
  tick(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    this.claiming = (async () => {
      do {
        this.again = false;
        const free = MAX_IN_FLIGHT - this.inFlight.size;
        if (free <= 0) return;
        const now = this.clock.now();
        const rows = await this.repo.claimDirect('push', now, now + this.config.webhooks.timeoutMs + CLAIM_MARGIN_MS, this.instanceId, free);
        for (const row of rows) this.start(row);
        if (rows.length === free) this.again = true;
      } while (this.again && !this.stopped);
    })()
      .catch((err) => this.logger.warn({ err: String(err) }, 'push claim failed'))
      .finally(() => (this.claiming = null));
  }

  private start(row: OutboxEntity): void {
    const data = (row.payload as { data?: PushRow }).data ?? ({} as PushRow);
    const origin = String(data.origin ?? '');
    const busy = (this.perOrigin.get(origin) ?? 0) >= MAX_IN_FLIGHT_PER_ORIGIN;
    if (!busy) this.perOrigin.set(origin, (this.perOrigin.get(origin) ?? 0) + 1);
    const work = (async () => {
      const outcome = busy ? this.deferred(row) : await this.deliver(row, data);
      if (outcome) await this.repo.finishMany(this.instanceId, [outcome]);
    })()
      .catch((err) => this.logger.warn({ err: String(err), eventId: row.id }, 'push delivery bookkeeping failed'))
      .finally(() => {
        if (!busy) {
          const n = (this.perOrigin.get(origin) ?? 1) - 1;
          if (n > 0) this.perOrigin.set(origin, n);
          else this.perOrigin.delete(origin);
        }
        this.inFlight.delete(work);
        this.tick();
      });
    this.inFlight.add(work);
  }

  /** One attempt; null when shutting down (the row is handed back). */
  private async deliver(row: OutboxEntity, data: PushRow): Promise<DeliveryOutcome | null> {
    const now = this.clock.now();
    // RFC 8030 §5.2: TTL in seconds; the prompt is useless once the step-up expired.
    const ttl = Math.floor((Date.parse(data.expiresAt) - now) / 1000);
    if (!(ttl > 0)) return this.settled(row, 'step-up expired before delivery');
    let subscription;
    try {
      subscription = await this.push.openForDelivery(row.appId, data.subscriptionId);
    } catch {
      return this.failed(row, 'subscription cannot be decrypted');
    }
    if (!subscription || subscription.userId !== data.userId) return this.settled(row, 'subscription removed');
    const problem = pushEndpointProblem(subscription.endpoint, this.config.webhookAllowPrivate);
    if (problem) return this.failed(row, problem);
    const agent = await this.agents.findLive(row.appId, data.agentId);
    if (!agent) return this.settled(row, 'agent revoked');
    let appName: string;
    try {
      appName = await this.apps.name(row.appId);
    } catch {
      return this.settled(row, 'app deleted');
    }
    const payload = JSON.stringify({
      type: 'step_up.created', stepUpId: data.stepUpId, app: appName, agent: agent.name, action: data.action, bindingCode: data.bindingCode,
      url: dashboardUrl(this.config.publicUrl, data.stepUpId),
    });
    try {
      const request = webpush.generateRequestDetails({ endpoint: subscription.endpoint, keys: subscription.keys }, payload, {
        vapidDetails: { subject: this.config.vapid.subject, publicKey: this.config.vapid.publicKey, privateKey: this.config.vapid.privateKey },
        TTL: ttl,
        urgency: 'high',
        contentEncoding: 'aes128gcm',
      });
      const headers: Record<string, string> = { 'user-agent': 'mfa-proxy-push/1' };
      // postOutbound sets Content-Length itself.
      for (const [name, value] of Object.entries(request.headers)) if (name.toLowerCase() !== 'content-length') headers[name] = String(value);
      const res = await postOutbound(new URL(subscription.endpoint), request.body as Buffer, headers, {
        timeoutMs: this.config.webhooks.timeoutMs, allowPrivate: this.config.webhookAllowPrivate, maxBytes: 1024,
        // The socket timeout bounds silence; this bounds a push service that trickles its answer.
        signal: AbortSignal.any([this.aborter.signal, AbortSignal.timeout(this.config.webhooks.timeoutMs)]),
      });
      if (res.status >= 200 && res.status < 300) return { id: row.id, status: 'delivered', deliveredAt: this.clock.now(), attempts: row.attempts + 1, lastError: null, nextAttemptAt: null };
      if (res.status === 404 || res.status === 410) {
        await this.push.removeGone(row.appId, subscription.id);
        return this.settled(row, `subscription gone (HTTP ${res.status}): removed`);
      }
      return this.retryLater(row, `HTTP ${res.status}`, data);
    } catch (err) {
      if (this.stopped) return null;
      const name = err instanceof Error ? err.name : '';
      return this.retryLater(row, name === 'AbortError' || name === 'TimeoutError' ? 'timeout' : err instanceof Error ? err.message : 'delivery failed', data);
    }
  }

  /** Finished without a push (nothing left to deliver to): kept as delivered so retention purges it. */
  private settled(row: OutboxEntity, note: string): DeliveryOutcome {
    return { id: row.id, status: 'delivered', deliveredAt: this.clock.now(), attempts: row.attempts, lastError: note, nextAttemptAt: null };
  }

  private failed(row: OutboxEntity, error: string): DeliveryOutcome {
    return { id: row.id, status: 'push_failed', deliveredAt: null, attempts: row.attempts + 1, lastError: error.slice(0, 300), nextAttemptAt: null };
  }

  /** Its push service is at its limit here: handed back, not counted as an attempt. */
  private deferred(row: OutboxEntity): DeliveryOutcome {
    return { id: row.id, status: 'push', deliveredAt: null, attempts: row.attempts, lastError: row.lastError, nextAttemptAt: this.clock.now() + DEFER_MS };
  }

  private retryLater(row: OutboxEntity, error: string, data: PushRow): DeliveryOutcome {
    const attempts = row.attempts + 1;
    const lastError = error.slice(0, 300);
    const next = retryAfterFailure(this.clock.now(), attempts, this.config.webhooks.retryBaseMs);
    // No retry past the attempt limit, nor past the step-up's expiry (the push would be refused as stale).
    if (attempts >= this.config.webhooks.maxAttempts || next >= Date.parse(data.expiresAt)) return { id: row.id, status: 'push_failed', deliveredAt: null, attempts, lastError, nextAttemptAt: null };
    return { id: row.id, status: 'push', deliveredAt: null, attempts, lastError, nextAttemptAt: next };
  }
}
