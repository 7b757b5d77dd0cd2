import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { PubSub } from '../../common/cache/pubsub.js';
import { ShutdownState } from '../../common/shutdown.js';
import { AppsService, KEY_REVOKED } from '../apps/apps.service.js';
import { OUTBOX_PUBLISHED } from './outbox-publisher.js';
import type { OutboxEntity } from './outbox.entity.js';
import { OutboxRepository } from './outbox.repository.js';
import { OutboxService, PING_EVENT, PUSH_EVENT } from './outbox.service.js';

/** Fallback when a publication hint is lost (Redis reconnecting): the shared poller looks anyway. */
const FALLBACK_POLL_MS = 2_000;
const HEARTBEAT_MS = 15_000;
const SCAN = 500;
const CATCH_UP_PAGE = 100;
/** How long a stream resuming from a not-yet-published event waits for its position. */
const RESOLVE_WAIT_MS = 5_000;
/** A client this far behind is dropped; it reconnects with Last-Event-ID and misses nothing. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export interface StreamSink {
  write(chunk: string): void;
  end(): void;
  /** Calls `fn` when the client goes away, at once if it already has. */
  onClose(fn: () => void): void;
  /** Bytes written but not yet taken by the client. */
  buffered(): number;
}

interface Stream {
  appId: string;
  keyId: string;
  lastEventId: string | undefined;
  /** Stream position of the last event sent (or the start point); null until resolved. */
  cursor: number | null;
  /** Caught up: the shared scan sends it new events. */
  live: boolean;
  resolveBy: number;
  sink: StreamSink;
  closed: boolean;
}

/**
 * The app's events as Server-Sent Events, in stream order (`stream_seq`, assigned after commit by
 * OutboxPublisher), from any instance, resuming after `Last-Event-ID`.
 *
 * One shared poller per instance, whatever the number of streams: it wakes on the publication
 * hint (pub/sub, every instance) or a slow fallback timer, reads what was published since it last
 * looked (every app at once, by position), and fans each row out to the open streams of its app.
 * A new or resuming stream first catches up on its own app's events up to the poller's position,
 * inside the same serialized pass, so nothing falls between its catch-up and the shared scan.
 * Streams own no timer, subscription or query: closing one only removes it from a map, and with no
 * open stream the poller's timers stop.
 */
@Injectable()
export class EventStreamService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(EventStreamService.name);
  private readonly byApp = new Map<string, Set<Stream>>();
  private readonly starting = new Set<Stream>();
  private count = 0;
  private opened = 0;
  /** Position up to which the shared scan has read; null while no stream is open. */
  private head: number | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private fallback: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly unsubscribe: Array<() => void> = [];
  /** Passes run in the poller's own async context, not in that of the request that woke it. */
  private readonly context = new AsyncResource('EventStreamPoller');

  constructor(
    private readonly repo: OutboxRepository,
    private readonly outbox: OutboxService,
    private readonly pubsub: PubSub,
    private readonly shutdown: ShutdownState,
    private readonly apps: AppsService,
  ) {}

  onModuleInit(): void {
    this.unsubscribe.push(
      this.pubsub.subscribe(OUTBOX_PUBLISHED, () => this.wake()),
      this.pubsub.subscribe(KEY_REVOKED, (m) => this.closeWhere((s) => s.keyId === m.keyId)),
      // Reconnected to Redis: a key revoked meanwhile was announced while we could not hear it.
      this.pubsub.subscribe('cache.reset', () => void this.closeRevoked()),
      this.shutdown.onClosing(() => this.closeWhere(() => true)),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    this.closeWhere(() => true);
    for (const off of this.unsubscribe) off();
    await this.running;
  }

  /** Open streams and running timers of this instance (both 0 when no stream is open); streams ever opened. */
  stats(): { streams: number; timers: number; opened: number } {
    return { streams: this.count, timers: (this.fallback ? 1 : 0) + (this.heartbeat ? 1 : 0), opened: this.opened };
  }

  /**
   * Starts a stream. Synchronous up to the registration of the close handler, so a client that
   * is already gone (it dropped while the request was authenticated) is removed at once.
   */
  open(appId: string, keyId: string, lastEventId: string | undefined, sink: StreamSink): void {
    const stream: Stream = { appId, keyId, lastEventId, cursor: null, live: false, resolveBy: Date.now() + RESOLVE_WAIT_MS, sink, closed: false };
    let streams = this.byApp.get(appId);
    if (!streams) this.byApp.set(appId, (streams = new Set()));
    streams.add(stream);
    this.starting.add(stream);
    this.count++;
    this.opened++;
    sink.onClose(() => this.close(stream));
    if (this.shutdown.closing) this.close(stream); // opened after shutdown began: end it as the others were
    if (stream.closed) return;
    sink.write(': connected\n\n');
    this.startTimers();
    this.wake();
  }

  private close(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    const streams = this.byApp.get(s.appId);
    streams?.delete(s);
    if (streams?.size === 0) this.byApp.delete(s.appId);
    this.starting.delete(s);
    this.count--;
    s.sink.end();
    if (this.count === 0) {
      this.stopTimers();
      this.head = null;
    }
  }

  /**
   * Ends the streams whose API key has been revoked, as read from the database: after a reconnect
   * to Redis (an announcement may have been lost meanwhile) and with every heartbeat (one lost on
   * the revoking instance's side, which could not publish it), so a revoked key's streams end
   * within HEARTBEAT_MS on every instance whatever Redis did. A failed read is retried then.
   */
  private async closeRevoked(): Promise<void> {
    const keyIds = new Set<string>();
    this.forEach((s) => keyIds.add(s.keyId));
    if (keyIds.size === 0) return;
    try {
      const active = await this.apps.activeKeyIds([...keyIds]);
      this.closeWhere((s) => keyIds.has(s.keyId) && !active.has(s.keyId));
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'API keys of open event streams could not be checked; the next heartbeat tries again');
    }
  }

  private closeWhere(match: (s: Stream) => boolean): void {
    for (const streams of [...this.byApp.values()]) for (const s of [...streams]) if (match(s)) this.close(s);
  }

  private startTimers(): void {
    if (!this.fallback) {
      this.fallback = setInterval(() => this.wake(), FALLBACK_POLL_MS);
      this.fallback.unref();
    }
    if (!this.heartbeat) {
      this.heartbeat = setInterval(() => {
        this.forEach((s) => s.sink.write(': heartbeat\n\n'));
        void this.closeRevoked();
      }, HEARTBEAT_MS);
      this.heartbeat.unref();
    }
  }

  private stopTimers(): void {
    if (this.fallback) clearInterval(this.fallback);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.fallback = this.heartbeat = null;
  }

  private forEach(fn: (s: Stream) => void): void {
    for (const streams of [...this.byApp.values()]) for (const s of [...streams]) fn(s);
  }

  /** Runs a pass soon; passes never overlap, calls during one ask for one more. */
  private wake(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.context.runInAsyncScope(() => this.run()).finally(() => (this.running = null));
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.pass();
      } while (this.again);
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'event stream pass failed; the next wake-up retries');
    }
  }

  private async pass(): Promise<void> {
    if (this.count === 0) {
      this.head = null; // idle: the next stream starts from the head of its time
      return;
    }
    let head = this.head ?? (await this.repo.head());
    for (const s of [...this.starting]) await this.catchUp(s, head);
    for (;;) {
      const rows = await this.repo.published(head, SCAN);
      for (const row of rows) this.fanOut(row);
      if (rows.length > 0) head = rows[rows.length - 1].streamSeq!;
      if (rows.length < SCAN) break;
    }
    this.head = this.count > 0 ? head : null;
  }

  /** A new stream: find where it starts, send its app's events up to `head`, then it is live. */
  private async catchUp(s: Stream, head: number): Promise<void> {
    if (s.closed) return;
    if (s.cursor === null) {
      if (s.lastEventId) {
        const position = await this.repo.positionOf(s.appId, s.lastEventId);
        // An event that is not yet published (the app got it by webhook first) has no position
        // yet: wait for it a little, so the resumed stream starts right after it.
        if (position && position.seq === null && Date.now() < s.resolveBy) return;
        // An unknown event id: from now, as a stream without Last-Event-ID.
        s.cursor = position?.seq ?? head;
      } else {
        s.cursor = head;
      }
    }
    while (!s.closed && s.cursor < head) {
      const rows = await this.repo.publishedForApp(s.appId, s.cursor, head, CATCH_UP_PAGE);
      for (const row of rows) this.send(s, row);
      if (rows.length < CATCH_UP_PAGE) break;
    }
    s.cursor = Math.max(s.cursor, head);
    s.live = true;
    this.starting.delete(s);
  }

  private fanOut(row: OutboxEntity): void {
    const streams = this.byApp.get(row.appId);
    if (!streams) return;
    let message: string | null | undefined;
    for (const s of [...streams]) {
      if (!s.live || row.streamSeq! <= s.cursor!) continue;
      message ??= this.message(row);
      this.send(s, row, message);
    }
  }

  private send(s: Stream, row: OutboxEntity, message: string | null = this.message(row)): void {
    if (s.closed) return;
    s.cursor = row.streamSeq!;
    if (message === null) return;
    s.sink.write(message);
    if (s.sink.buffered() > MAX_BUFFERED_BYTES) this.close(s);
  }

  /** The SSE message of an event: `id` is the event id (what Last-Event-ID carries back). */
  private message(row: OutboxEntity): string | null {
    // A CIBA ping is the agent's, not an event of the app (PingDispatcher delivers it).
    if (row.type === PING_EVENT) return null;
    // A Web Push is the human's (PushDispatcher in modules/push delivers it).
    if (row.type === PUSH_EVENT) return null;
    try {
      return `id: ${row.id}\nevent: ${row.type}\ndata: ${JSON.stringify(this.outbox.deliverable(row))}\n\n`;
    } catch (err) {
      // A sealed field that does not open (unknown master key, tampered row): never send it half.
      this.logger.error({ err: String(err), eventId: row.id }, 'event payload cannot be opened; not streamed');
      return null;
    }
  }
}
