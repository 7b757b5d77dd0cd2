import { Injectable } from '@nestjs/common';
import { PubSub } from '../../common/cache/pubsub.js';
import { Clock } from '../../common/clock.js';
import { TtlCache } from '../../common/cache/ttl-cache.js';
import { AppsService } from '../apps/apps.service.js';
import { OutboxRepository } from './outbox.repository.js';

/** How long a read webhook target is used: the longest another instance's change of URL or secret goes unseen here. */
export const WEBHOOK_TARGET_TTL_MS = 1_000;

export interface WebhookTarget {
  /** null: the app has no webhookUrl. */
  target: { url: string; secrets: string[] } | null;
  /** When it was read (Clock time): rows due by then may be finished as no_endpoint on its word. */
  readAt: number;
}

/**
 * Each app's webhook URL and signing secrets, read once per app and second instead of once per
 * delivered row. A change made through this process (PATCH webhookUrl, secret rotation) drops the
 * cache at once; one made on another instance is seen within WEBHOOK_TARGET_TTL_MS, as is the end
 * of a rotation's grace period. Redis reconnecting (`cache.reset`) drops it too.
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
    pubsub.subscribe('cache.reset', () => this.clear());
  }

  clear(): void {
    this.generation++;
    this.cache.clear();
  }

  async get(appId: string): Promise<WebhookTarget> {
    const cached = this.cache.get(appId);
    if (cached) return cached;
    // Read after the clock: every row due by `readAt` was due before this reading.
    const readAt = this.clock.now();
    const generation = this.generation;
    const entry = { target: await this.apps.webhookTarget(appId), readAt };
    if (generation === this.generation) this.cache.set(appId, entry);
    return entry;
  }
}
