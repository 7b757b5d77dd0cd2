import { Global, Inject, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { APP_CONFIG } from '../config/config.js';
import type { AppConfig } from '../config/config.schema.js';
import { MemoryPubSub, PubSub, RedisPubSub } from './cache/pubsub.js';
import { MemoryReplayCache, RedisReplayCache, ReplayCache } from './cache/replay-cache.js';
import { Clock } from './clock.js';
import { Cipher } from './crypto/cipher.js';
import { createRedis, REDIS } from './redis.js';
import { ShutdownState } from './shutdown.js';
import { Serializer } from '../database/serializer.js';
import { Cascades } from './cascade.js';

const REDIS_SUBSCRIBER = Symbol('REDIS_SUBSCRIBER');

/** Process-wide providers: configuration, clock, cipher, Redis, pub/sub, replay cache, per-key serialization. */
@Global()
@Module({})
export class CoreModule implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS) private readonly redis: Redis | null,
    @Inject(REDIS_SUBSCRIBER) private readonly subscriber: Redis | null,
  ) {}

  static forRoot(config: AppConfig, clock: Clock = new Clock()): DynamicModule {
    return {
      module: CoreModule,
      providers: [
        { provide: APP_CONFIG, useValue: config },
        { provide: Clock, useValue: clock },
        { provide: Cipher, useFactory: () => new Cipher(config.masterKey, config.masterKeysPrevious) },
        ShutdownState,
        Serializer,
        Cascades,
        { provide: REDIS, useFactory: () => createRedis(config, 'commands') },
        { provide: REDIS_SUBSCRIBER, useFactory: () => createRedis(config, 'subscriber') },
        {
          provide: PubSub,
          inject: [REDIS, REDIS_SUBSCRIBER],
          useFactory: (redis: Redis | null, sub: Redis | null) => {
            if (!redis || !sub) return new MemoryPubSub();
            // After a reconnect, anything published meanwhile was missed: caches start afresh.
            const ps: RedisPubSub = new RedisPubSub(redis, sub, config.redis!.keyPrefix, () => ps.publishLocal('cache.reset', {}));
            return ps;
          },
        },
        {
          provide: ReplayCache,
          inject: [REDIS],
          useFactory: (redis: Redis | null) => (redis ? new RedisReplayCache(redis, config.redis!.keyPrefix) : new MemoryReplayCache(() => clock.now())),
        },
      ],
      exports: [APP_CONFIG, Clock, Cipher, REDIS, PubSub, ReplayCache, ShutdownState, Serializer, Cascades],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.subscriber?.disconnect();
    // QUIT lets what was sent be answered; when it cannot be sent (Redis unreachable), stop reconnecting.
    await this.redis?.quit().catch(() => this.redis?.disconnect());
  }
}
