import type { Redis } from 'ioredis';

/**
 * Remembers one-time identifiers (DPoP proof `jti`, client assertion `jti`) until they expire.
 * `claim` is true the first time a key is seen. Failing to reach Redis throws: replay
 * protection fails closed.
 */
export abstract class ReplayCache {
  abstract claim(key: string, ttlSeconds: number): Promise<boolean>;
}

export class MemoryReplayCache extends ReplayCache {
  private readonly seen = new Map<string, number>();
  private lastSweep = 0;

  constructor(private readonly now: () => number = Date.now) {
    super();
  }

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    const now = this.now();
    this.sweep(now);
    const until = this.seen.get(key);
    if (until !== undefined && until > now) return false;
    this.seen.set(key, now + ttlSeconds * 1000);
    return true;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 10_000) return;
    this.lastSweep = now;
    for (const [k, until] of this.seen) if (until <= now) this.seen.delete(k);
  }
}

export class RedisReplayCache extends ReplayCache {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    super();
  }

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    // SET NX is atomic across every instance sharing this Redis.
    const result = await this.redis.set(`${this.prefix}replay:${key}`, '1', 'EX', Math.max(1, Math.ceil(ttlSeconds)), 'NX');
    return result === 'OK';
  }
}
