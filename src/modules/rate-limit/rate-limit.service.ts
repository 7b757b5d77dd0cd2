import { Global, Inject, Injectable, Logger, Module } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { AppError } from '../../common/errors/app-error.js';
import { REDIS } from '../../common/redis.js';
import { MetricsService } from '../ops/metrics.service.js';
import { BUCKETS, type Bucket } from './buckets.js';

/** Effectively unlimited store-side: the budget of `agentRequests` varies per agent and is compared here. */
const VARIABLE_POINTS = 1_000_000_000;

export interface Spent {
  limit: number;
  remaining: number;
  resetSeconds: number;
}

export function rateLimitHeaders(s: Spent): Record<string, string> {
  return { 'RateLimit-Limit': String(s.limit), 'RateLimit-Remaining': String(Math.max(0, s.remaining)), 'RateLimit-Reset': String(s.resetSeconds) };
}

/** Buckets behind one interface: in memory, or in Redis when REDIS_URL is set (shared by all instances). */
@Injectable()
export class RateLimitService {
  private readonly logger = new Logger(RateLimitService.name);
  private readonly limiters = new Map<Bucket, RateLimiterAbstract>();
  /** Budgets the configuration may change. */
  private readonly points: Partial<Record<Bucket, number>>;

  constructor(
    @Inject(REDIS) redis: Redis | null,
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    this.points = { userPushes: config.fatigue.pushesPerUserPerHour, oauthToken: config.limits.tokensPerClientPerMinute, appVerify: config.limits.verifiesPerAppPerMinute };
    for (const [name, b] of Object.entries(BUCKETS) as [Bucket, (typeof BUCKETS)[Bucket]][]) {
      const opts = { keyPrefix: `${config.redis?.keyPrefix ?? ''}rl:${name}`, points: this.points[name] ?? (b.points || VARIABLE_POINTS), duration: b.duration };
      this.limiters.set(name, redis ? new RateLimiterRedis({ ...opts, storeClient: redis }) : new RateLimiterMemory(opts));
    }
  }

  /** Spends one point; throws 429 (with Retry-After and RateLimit-*) when the budget is gone. */
  async consume(bucket: Bucket, key: string, limit: number = this.limitOf(bucket)): Promise<Spent | null> {
    const res = await this.storeOrFail(bucket, () => this.limiters.get(bucket)!.consume(key, 1));
    if (!res) return null;
    return this.verdict(bucket, res, limit, res.consumedPoints > limit);
  }

  private limitOf(bucket: Bucket): number {
    return this.points[bucket] ?? BUCKETS[bucket].points;
  }

  /** The store's answer: an exhausted bucket rejects with a RateLimiterRes, which is an answer too. */
  private storeOrFail(bucket: Bucket, call: () => Promise<RateLimiterRes | null>): Promise<RateLimiterRes | null> {
    return this.reachable(bucket, () =>
      call().catch((err: unknown) => {
        if (err instanceof RateLimiterRes) return err;
        throw err;
      }),
    );
  }

  /** The call's result, or null when the store is unreachable and the bucket fails open; a fail-closed bucket throws 503. */
  private async reachable<T>(bucket: Bucket, call: () => Promise<T>): Promise<T | null> {
    try {
      return await call();
    } catch (err) {
      if (BUCKETS[bucket].failClosed) {
        throw new AppError('service_unavailable', 'rate limiting is unavailable; try again shortly', { cause: err, headers: { 'Retry-After': '5' } });
      }
      this.metrics.failOpen.labels(`rate-limit:${bucket}`).inc();
      this.logger.warn({ bucket }, 'rate-limit store unreachable: failing open');
      return null;
    }
  }

  private verdict(bucket: Bucket, res: RateLimiterRes, limit: number, exhausted: boolean): Spent {
    const spec = BUCKETS[bucket];
    const spent: Spent = { limit, remaining: limit - res.consumedPoints, resetSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)) };
    if (exhausted) {
      throw new AppError(spec.code, `rate limit of ${limit} per ${spec.duration} s exceeded`, {
        headers: { 'Retry-After': String(spent.resetSeconds), ...rateLimitHeaders(spent) },
      });
    }
    return spent;
  }
}

@Global()
@Module({ providers: [RateLimitService], exports: [RateLimitService] })
export class RateLimitModule {}
