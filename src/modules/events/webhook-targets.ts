import { Injectable } from '@nestjs/common';
import { APP_CHANGED } from '../../common/cache/channels.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { Clock } from '../../common/clock.js';
import { TtlCache } from '../../common/cache/ttl-cache.js';
import { AppsService } from '../apps/apps.service.js';
import { OutboxRepository } from './outbox.repository.js';

/** How long a read webhook target is used when no change is announced (Redis down, the end of a grace period). */
export const WEBHOOK_TARGET_TTL_MS = 1_000;
/**
 * How far the clocks of two instances may disagree. A row's due time comes from the clock of the
 * instance that wrote it; a reading of "no webhookUrl" vouches only for rows due this long before it,
 * so a row written just after a URL was set, by an instance whose clock is behind, is not finished
 * as no_endpoint on the word of a reading made before the change.
 */
export const CLOCK_SKEW_ALLOWANCE_MS = 1_000;

export interface WebhookTarget {
  /** null: the app has no webhookUrl. */
  target: { url: string; secrets: string[] } | null;
  /** When it was read (Clock time) less CLOCK_SKEW_ALLOWANCE_MS: rows due by then may be finished as no_endpoint on its word. */
  readAt: number;
}

/**
 * Each app's webhook URL and signing secrets, read once per app and second instead of once per
 * delivered row. A change of URL or secret drops the app's entry on every instance at once
 * (`app.changed` over pub/sub; a write to the apps table through this process drops them all); the
 * end of a rotation's grace period is seen within WEBHOOK_TARGET_TTL_MS. Redis reconnecting
 * (`cache.reset`) drops everything.
 */
@Injectable()
export class WebhookTargets {
  private readonly cache = new TtlCache<WebhookTarget>(WEBHOOK_TARGET_TTL_MS);
  /** Bumped by every clear: a reading that started before one is used once, not cached. */
  private generation = 0;

  constructor(
    private readonly apps: AppsService,
    private readonly clock: Clock,
    repo: OutboxRepository,
    pubsub: PubSub,
  ) {
    repo.onAppsUpdated(() => this.clear());
    // A change of URL or secret on any instance (the apps module announces it).
    pubsub.subscribe(APP_CHANGED, (m) => this.forget(String(m.appId)));
    pubsub.subscribe('cache.reset', () => this.clear());
  }

  clear(): void {
    this.generation++;
    this.cache.clear();
  }

  private forget(appId: string): void {
    this.generation++;
    this.cache.delete(appId);
  }

  async get(appId: string): Promise<WebhookTarget> {
    const cached = this.cache.get(appId);
    if (cached) return cached;
    // Read after the clock: every row due by `readAt` was due before this reading, on any instance's clock.
    const readAt = this.clock.now() - CLOCK_SKEW_ALLOWANCE_MS;
    const generation = this.generation;
    const entry = { target: await this.apps.webhookTarget(appId), readAt };
    if (generation === this.generation) this.cache.set(appId, entry);
    return entry;
  }
}
