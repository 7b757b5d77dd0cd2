import { Injectable } from '@nestjs/common';
import { APP_CHANGED } from '../../common/cache/channels.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { Clock } from '../../common/clock.js';
import { LoadingCache } from '../../common/cache/loading-cache.js';
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
  /** A reading that started before a clear or a change of its app is used once, not cached (LoadingCache). */
  private readonly cache = new LoadingCache<WebhookTarget>((appId) => this.read(appId), WEBHOOK_TARGET_TTL_MS);

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
    this.cache.clear();
  }

  private forget(appId: string): void {
    this.cache.delete(appId);
  }

  async get(appId: string): Promise<WebhookTarget> {
    return this.cache.get(appId);
  }

  private async read(appId: string): Promise<WebhookTarget> {
    // Read after the clock: every row due by `readAt` was due before this reading, on any instance's clock.
    const readAt = this.clock.now() - CLOCK_SKEW_ALLOWANCE_MS;
    return { target: await this.apps.webhookTarget(appId), readAt };
  }
}
