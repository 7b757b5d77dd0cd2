import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';

export type PubSubHandler = (message: Record<string, unknown>) => void;

/**
 * Cross-instance notifications (agent revoked, step-up decided). In-process when embedded,
 * Redis pub/sub when REDIS_URL is set. Messages are hints to drop caches or wake waiters:
 * nothing correctness-critical depends on their delivery.
 */
export abstract class PubSub {
  abstract publish(channel: string, message: Record<string, unknown>): Promise<void>;
  /** Returns a function that removes this handler. */
  abstract subscribe(channel: string, handler: PubSubHandler): () => void;
  /** Resolves once the other instances' messages on the channels subscribed so far reach this one. */
  async subscribed(): Promise<void> {}
  async close(): Promise<void> {}
}

export class MemoryPubSub extends PubSub {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  async publish(channel: string, message: Record<string, unknown>): Promise<void> {
    this.emitter.emit(channel, message);
  }

  subscribe(channel: string, handler: PubSubHandler): () => void {
    this.emitter.on(channel, handler);
    return () => this.emitter.off(channel, handler);
  }
}

/**
 * Every instance's subscribers, through Redis. This instance's own subscribers get the message at
 * once, before `publish` returns (not after a round trip through Redis, which they then ignore):
 * the instance that revokes or rotates something never serves the old state after saying it is done.
 */
export class RedisPubSub extends PubSub {
  private readonly local = new MemoryPubSub();
  private readonly channels = new Set<string>();
  /** The SUBSCRIBE commands sent so far (each settles once Redis has confirmed it, or failed). */
  private subscriptions: Promise<unknown>[] = [];
  private readonly origin = randomUUID();
  private readonly logger = new Logger(RedisPubSub.name);

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    private readonly prefix: string,
    onReconnect: () => void,
  ) {
    super();
    subscriber.on('message', (channel: string, raw: string) => {
      if (!channel.startsWith(prefix)) return;
      try {
        const parsed = JSON.parse(raw) as { from?: unknown; message?: Record<string, unknown> } & Record<string, unknown>;
        // { from, message }; a bare message is from an instance of an earlier version (rolling upgrade).
        const [from, message] = typeof parsed.from === 'string' && parsed.message && typeof parsed.message === 'object' ? [parsed.from, parsed.message] : [null, parsed];
        if (from !== this.origin) void this.local.publish(channel.slice(prefix.length), message);
      } catch {
        /* not ours */
      }
    });
    subscriber.on('ready', () => {
      // Every channel again, on every connection (the subscriber is created without ioredis's own
      // re-subscription, see createRedis): one that failed before (Redis down at boot, or a
      // connection dropped before Redis answered) is subscribed now. SUBSCRIBE is idempotent.
      const subscriptions = [...this.channels].map((c) => this.sendSubscribe(c));
      this.subscriptions = subscriptions;
      // Messages sent while disconnected are lost: let subscribers drop what they cached. So are
      // those sent until Redis has confirmed the subscriptions: what was read in between (after
      // this first reset) may be older than a change announced then, so drop it again once they are in place.
      onReconnect();
      void Promise.all(subscriptions).then(() => onReconnect());
    });
  }

  /**
   * Never fails its caller: publishing follows a committed change, which must still be answered
   * as done. With Redis unreachable the other instances' caches fall back to their lifetime
   * (PRINCIPAL_CACHE_SECONDS) and re-read everything when the subscriber reconnects.
   */
  async publish(channel: string, message: Record<string, unknown>): Promise<void> {
    this.publishLocal(channel, message);
    try {
      await this.publisher.publish(this.prefix + channel, JSON.stringify({ from: this.origin, message }));
    } catch (err) {
      this.logger.warn({ channel, err: String(err) }, 'pub/sub message not sent: other instances rely on cache lifetimes until Redis is back');
    }
  }

  subscribe(channel: string, handler: PubSubHandler): () => void {
    const off = this.local.subscribe(channel, handler);
    if (!this.channels.has(channel)) {
      this.channels.add(channel);
      this.subscriptions.push(this.sendSubscribe(channel));
    }
    return off;
  }

  /** SUBSCRIBE; settles (never rejects) once Redis has confirmed it or it failed. */
  private sendSubscribe(channel: string): Promise<void> {
    return this.subscriber.subscribe(this.prefix + channel).then(
      () => undefined,
      (err: unknown) => this.logger.warn({ channel, err: String(err) }, 'pub/sub subscription failed: sent again when Redis is back'),
    );
  }

  /**
   * An instance that answered before its subscriptions were in place would miss what other
   * instances announce meanwhile: a revocation (it would serve the revoked agent until its cache
   * expires) or a decision (a long-poll would wait its whole time). Boot waits for them.
   */
  override async subscribed(): Promise<void> {
    await Promise.all(this.subscriptions);
  }

  /** Delivers a message to this instance's subscribers only. */
  publishLocal(channel: string, message: Record<string, unknown>): void {
    void this.local.publish(channel, message);
  }

  override async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}
