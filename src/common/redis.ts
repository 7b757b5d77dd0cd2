import { Redis } from 'ioredis';
import type { AppConfig } from '../config/config.schema.js';

export const REDIS = Symbol('REDIS');

/** A Redis connection when REDIS_URL is set, else null (everything then runs in-process). */
export function createRedis(config: AppConfig, role: string): Redis | null {
  if (!config.redis) return null;
  const timeoutMs = config.redis.commandTimeoutMs;
  const client = new Redis(config.redis.url, {
    connectionName: `mfa-proxy:${role}`,
    // Callers decide whether to fail open or closed; a command waits for a reconnect at most
    // timeoutMs (commandTimeout, below), and only for the first attempt (queueOnlyForFirstReconnect),
    // so that a reconnect of a few ms costs nothing and an outage fails fast. A connection
    // that closes fails what was sent on it or queued for it at once (maxRetriesPerRequest 0), and
    // nothing is sent again on the next one (a replay claim run after its request was refused would
    // refuse the client's retry as a replay). What can still run after its caller saw it fail: a
    // command Redis got but did not answer in time, and one queued for a first reconnect that took
    // longer than timeoutMs to become ready (connectTimeout bounds the TCP part).
    maxRetriesPerRequest: 0,
    enableOfflineQueue: true,
    autoResendUnfulfilledCommands: false,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
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
  queueOnlyForFirstReconnect(client);
  reconnectWhenSilent(client, timeoutMs);
  return client;
}

/**
 * Commands wait for the first reconnect attempt only (a restart, a reset: a few ms). Once it has
 * failed, Redis is down: commands fail at once until a connection is ready again, instead of each
 * waiting for the next attempt (up to 2 s apart) or its timeout.
 */
function queueOnlyForFirstReconnect(client: Redis): void {
  let attempts = 0;
  client.on('reconnecting', () => {
    attempts++;
    client.options.enableOfflineQueue = attempts <= 1;
  });
  client.on('ready', () => {
    attempts = 0;
    client.options.enableOfflineQueue = true;
  });
}

/**
 * A connection whose link goes silent instead of closing (a partition, a peer gone without a FIN)
 * fails its commands by their timeout but is never closed by itself, and the subscriber, which
 * sends nothing once subscribed, would not even notice: it would miss every cache invalidation for
 * as long as TCP keepalive takes (hours). A PING every `timeoutMs` (allowed in subscriber mode)
 * that goes unanswered drops the connection, and ioredis opens a new one (the subscriber then
 * subscribes again and its caches are reset).
 */
function reconnectWhenSilent(client: Redis, timeoutMs: number): void {
  const timer = setInterval(() => {
    if (client.status !== 'ready') return;
    client.ping().catch(() => {
      if (client.status === 'ready') client.disconnect(true);
    });
  }, timeoutMs);
  timer.unref();
  client.once('end', () => clearInterval(timer));
}
