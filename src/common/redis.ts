import { Redis } from 'ioredis';
import type { AppConfig } from '../config/config.schema.js';

export const REDIS = Symbol('REDIS');

/** A Redis connection when REDIS_URL is set, else null (everything then runs in-process). */
export function createRedis(config: AppConfig, role: string): Redis | null {
  if (!config.redis) return null;
  const client = new Redis(config.redis.url, {
    connectionName: `mfa-proxy:${role}`,
    // Fail fast instead of queueing forever: callers decide whether to fail open or closed.
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    // A link that goes silent instead of closing never fails a command by itself: each command
    // fails after this long (queued ones too), and a connection that has received nothing for this
    // long while commands wait on it is destroyed, so that ioredis connects again.
    commandTimeout: config.redis.commandTimeoutMs,
    socketTimeout: config.redis.commandTimeoutMs,
    lazyConnect: false,
    // Commands issued in one event-loop turn (every request's rate-limit check, replay claims) go
    // to Redis as one pipeline: one write and one read for many requests. Not for the subscriber.
    enableAutoPipelining: role === 'commands',
    // The subscriber's channels are subscribed again by RedisPubSub on every 'ready'. ioredis's own
    // re-SUBSCRIBE after a reconnect is an unhandled promise: if the connection drops again before
    // Redis answers it, it rejects with nothing to catch it (the process dies) and the channel is
    // forgotten.
    autoResubscribe: role !== 'subscriber',
  });
  client.on('error', () => undefined); // reported through readiness and by the callers that fail
  return client;
}
