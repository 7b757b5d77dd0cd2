import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { PubSub } from '../../common/cache/pubsub.js';
import type { OutboxEntity } from './outbox.entity.js';
import { OUTBOX_PUBLISHED } from './outbox-publisher.js';
import { OutboxRepository, type DeliveryOutcome } from './outbox.repository.js';
import { OutboxService } from './outbox.service.js';
import { failedAttempt } from './retry.js';
import { postOutbound } from './outbound-http.js';
import { signWebhook } from './webhook-signature.js';
import { WebhookTargets, type WebhookTarget } from './webhook-targets.js';

/** Fallback poll: retries coming due, and commits this process was not told about. */
const TICK_MS = 250;
/**
 * Requests one instance has open to one app's endpoint at most: a hanging endpoint holds only
 * these, and the rest of MAX_IN_FLIGHT stays for the other apps. It also bounds one app's
 * throughput per instance (about this many divided by its endpoint's response time).
 */
export const WEBHOOK_PER_APP_CONCURRENCY = 32;
/** Requests one instance has open in all. */
const MAX_IN_FLIGHT = 256;
/** Slots of an app (or of all, times 4) freed before a refill: a claim takes several rows, not one per finished delivery. */
const REFILL_AT = 8;
/**
 * Rows of one app claimed ahead of its free slots (and of all apps, MAX_QUEUED): when a delivery
 * ends, the app's next one starts at once from this queue instead of a claim round (two queries)
 * later, and the queue is refilled while it still holds work. Without it one app's throughput
 * per instance was its slots divided by (response time + claim round). An app's queue is as deep
 * as its endpoint's recent pace delivers in half of CLAIM_AHEAD_MS (see depthOf): nothing for a
 * hanging endpoint, so its rows stay free for other instances.
 */
const QUEUE_PER_APP = 2 * WEBHOOK_PER_APP_CONCURRENCY;
/** An app's pace is measured over at least this long. */
const PACE_MS = 100;
const MAX_QUEUED = MAX_IN_FLIGHT;
/**
 * How long a row claimed ahead may wait in the queue. Its claim lasts this much longer than a
 * delivery's (timeout + CLAIM_MARGIN_MS), and a row is started only while its claim still has
 * a whole delivery's time left: one that waited longer is handed back, never delivered late, so
 * no delivery outlives its claim (another instance may take the row once the claim lapses).
 */
const CLAIM_AHEAD_MS = 1_000;
/** Claimed time beyond the delivery timeout (resolving the host, recording the outcome). */
const CLAIM_MARGIN_MS = 5_000;
/** Apps considered per claim (beyond that, a claim looks at those after the app served last: dueApps). */
const APPS_PER_CLAIM = 1_000;
/**
 * Rows of one app without a webhookUrl finished as no_endpoint per round. On SQLite a round is
 * synchronous: 1,000 rows held the event loop 16–40 ms (a verify bench, about 25 µs a row).
 */
const NO_ENDPOINT_BATCH = 250;
/** Delivery outcomes recorded per statement. */
const FINISH_BATCH = 1_000;
/** Idle keep-alive connections to webhook endpoints are closed after this long. */
const IDLE_SOCKET_MS = 2_000;

interface Queued {
  row: OutboxEntity;
  target: NonNullable<WebhookTarget['target']>;
}

/**
 * Delivers the outbox to each app's webhookUrl, at least once: claims due rows (SKIP LOCKED on
 * PostgreSQL, so N instances share the work), POSTs them signed, and on failure retries with
 * exponential backoff and jitter up to WEBHOOK_MAX_ATTEMPTS. A crashed instance's claims lapse.
 *
 * Deliveries run concurrently, and no app can hold up another's (API.md v1.1, issue 11 item 3):
 * each claim takes at most WEBHOOK_PER_APP_CONCURRENCY rows per app minus what this instance
 * already has in flight to it, skips apps at that limit, and goes round the apps with due rows
 * (found by an index skip scan, not by reading a backlog), so one app's hanging endpoint or long
 * backlog never fills the instance's capacity.
 *
 * Its cost follows the new work (issue 12): it wakes when pending events commit (here, or
 * published by another instance) rather than on a timer alone; events of an app without a
 * webhookUrl are written `no_endpoint` (OutboxService) and wake nothing; each app's target is read
 * once a second, not per row (WebhookTargets); due rows of an app whose webhookUrl was removed
 * since they were written are finished as `no_endpoint` in one statement per round, never claimed
 * one by one; claimed rows come back
 * whole from the claim itself; outcomes are recorded in batches (one statement for many rows,
 * each still conditional on this instance's claim); connections to endpoints are kept alive.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WebhookDispatcher.name);
  readonly instanceId = randomUUID();
  private timer: NodeJS.Timeout | null = null;
  private claiming: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly perApp = new Map<string, number>();
  /** Rows claimed ahead, per app, oldest due first (see QUEUE_PER_APP); an app is moved to the end of the map each time it is served. */
  private readonly queued = new Map<string, Queued[]>();
  private queuedCount = 0;
  /** The last claim could not give every app with due rows its share (the instance was full). */
  private crowded = false;
  /** Per app: deliveries ended since `since`, and the queue depth last derived from them (depthOf). */
  private readonly pace = new Map<string, { done: number; since: number; depth: number }>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Aborts requests still open at shutdown; their rows are handed back, not counted as attempts. */
  private readonly aborter = new AbortController();
  /** The app served last by the previous claim: the next one starts after it. */
  private lastServed = '';
  /** Outcomes not yet recorded (their rows stay claimed by this instance until they are). */
  private readonly outcomes: DeliveryOutcome[] = [];
  private recording: Promise<void> | null = null;
  private readonly agents = {
    http: new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' }),
    https: new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' }),
  };
  private readonly unsubscribe: Array<() => void> = [];
  private refill = false;
  /** Apps without a webhookUrl whose rows due by the reading at this time are all finished. */
  private readonly drained = new Map<string, number>();

  constructor(
    private readonly repo: OutboxRepository,
    private readonly outbox: OutboxService,
    private readonly targets: WebhookTargets,
    private readonly pubsub: PubSub,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    // One listener per request in flight, MAX_IN_FLIGHT of them.
    setMaxListeners(0, this.aborter.signal);
  }

  onApplicationBootstrap(): void {
    this.repo.onAddedCommitted(() => void this.tick(), 'pending');
    // A publication of events none of which is pending (`pending: false`) has nothing for it.
    this.unsubscribe.push(this.pubsub.subscribe(OUTBOX_PUBLISHED, (m) => void (m.pending !== false && this.tick())));
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const off of this.unsubscribe) off();
    this.aborter.abort();
    await this.claiming?.catch(() => undefined);
    await Promise.allSettled([...this.inFlight]);
    await this.recording;
    await this.record();
    // Hand back what this instance claimed but did not finish.
    await this.repo.releaseClaims(this.instanceId).catch(() => undefined);
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /** Requests this instance has open, in all and per app. */
  stats(): { inFlight: number; perApp: Record<string, number> } {
    return { inFlight: this.inFlight.size, perApp: Object.fromEntries(this.perApp) };
  }

  /** Claims what is due and starts delivering it; calls during a claim ask for one more. */
  tick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.claiming) {
      this.again = true;
      return this.claiming;
    }
    this.claiming = (async () => {
      for (let round = 0; round === 0 || (this.again && !this.stopped); round++) {
        // The rest of the event loop's turn between rounds: on SQLite a round's statements settle
        // in microtasks, so rounds back to back (a backlog) would hold the loop until it is gone.
        if (round > 0) await new Promise((resolve) => setImmediate(resolve));
        this.again = false;
        await this.claimAndStart();
      }
    })()
      .catch((err) => this.logger.warn({ err: String(err) }, 'webhook dispatch failed'))
      .finally(() => (this.claiming = null));
    return this.claiming;
  }

  private async claimAndStart(): Promise<void> {
    const now = this.clock.now();
    this.dropStale(now);
    const { apps: due, rotated } = await this.dueApps(now);
    if (due.length === 0) return;
    const dueSet = new Set(due);
    const targets = await this.targetsOf(due);

    // Apps without a webhookUrl: their due rows are finished in bulk, as of the target's reading
    // (rows due later wait for the next reading), skipping apps already drained as of that reading.
    for (const appId of this.drained.keys()) if (!dueSet.has(appId)) this.drained.delete(appId);
    for (const appId of this.pace.keys()) if (!dueSet.has(appId) && !this.perApp.has(appId)) this.pace.delete(appId);
    const none = due.filter((appId) => targets.get(appId)?.target === null && this.drained.get(appId) !== targets.get(appId)!.readAt);
    if (none.length > 0) {
      const finished = await this.repo.finishWithoutEndpoint(none.map((appId) => ({ appId, k: NO_ENDPOINT_BATCH, dueBy: targets.get(appId)!.readAt })), now);
      for (const appId of none) {
        if ((finished.get(appId) ?? 0) >= NO_ENDPOINT_BATCH) this.again = true;
        else this.drained.set(appId, targets.get(appId)!.readAt);
      }
    }

    // Slots free now (less those the queued rows that could start now will take; rows queued
    // behind their app's own full slots take none, or a few busy apps would hold every slot and
    // no other app would get one), and room to claim ahead of them.
    let capacity = MAX_IN_FLIGHT - this.inFlight.size - this.startableQueued();
    let ahead = MAX_QUEUED - Math.max(0, this.queuedCount - (MAX_IN_FLIGHT - this.inFlight.size));
    if (capacity <= 0 && ahead <= 0) {
      this.crowded = true;
      return;
    }
    const pending = due.filter((appId) => targets.get(appId)?.target && this.held(appId) < WEBHOOK_PER_APP_CONCURRENCY + this.depthOf(appId, now));
    if (pending.length === 0) return;
    // Every slot taken while an app with due rows holds none here: claim nothing ahead. The busy
    // apps' queues then run dry, the slots they free stay free, and the next claim gives them to
    // the apps that were waiting (else fast apps, with hanging ones holding the rest, kept every
    // slot until the hanging requests timed out).
    if (capacity <= 0 && pending.some((appId) => this.held(appId) === 0)) {
      this.crowded = true;
      return;
    }
    // Round robin: start after the app served last, so with more apps than capacity each gets its turn.
    const from = rotated ? 0 : pending.findIndex((appId) => appId > this.lastServed);
    const order = from <= 0 ? pending : [...pending.slice(from), ...pending.slice(0, from)];
    const wants: { appId: string; k: number }[] = [];
    // The last app given slots of its own: apps given only rows to hold ahead (those served lately
    // have a pace, new ones none) do not move the round robin, or it would go back to them.
    let lastTurn: string | null = null;
    for (const appId of order) {
      if (capacity <= 0 && ahead <= 0) break;
      const held = this.held(appId);
      const startNow = Math.min(Math.max(WEBHOOK_PER_APP_CONCURRENCY - held, 0), Math.max(capacity, 0));
      // Ahead of its slots: never more than its pace's depth, even when the instance has no room to start any.
      const depth = this.depthOf(appId, now);
      const queue = Math.max(0, Math.min(WEBHOOK_PER_APP_CONCURRENCY + depth - held - startNow, depth, ahead));
      if (startNow + queue <= 0) continue;
      wants.push({ appId, k: startNow + queue });
      if (startNow > 0) lastTurn = appId;
      capacity -= startNow;
      ahead -= queue;
    }
    // Apps left without their share for want of room: refill as soon as slots free up.
    this.crowded = capacity <= 0 && wants.length < pending.length;
    if (wants.length === 0) return;
    if (lastTurn !== null) this.lastServed = lastTurn;
    const rows = await this.repo.claim(wants, now, now + this.config.webhooks.timeoutMs + CLAIM_MARGIN_MS + CLAIM_AHEAD_MS, this.instanceId);
    for (const row of rows) this.enqueue(row, targets.get(row.appId)!.target!);
    this.pumpAll();
  }

  /**
   * The apps with deliveries due that this claim looks at. Usually all of them, in code-unit order
   * (the round robin below compares app ids in JavaScript, whatever the database's collation).
   * With APPS_PER_CLAIM or more, those after the app served last, then from the first app: the
   * round robin moves past the apps it served, not past apps left waiting for want of room
   * (a claim of an instance that is full serves none, and the next one starts at the same place).
   */
  private async dueApps(now: number): Promise<{ apps: string[]; rotated: boolean }> {
    const first = await this.repo.appsWithDue(now, APPS_PER_CLAIM);
    if (first.length < APPS_PER_CLAIM || this.lastServed === '') return { apps: first.sort(), rotated: false };
    const after = await this.repo.appsWithDue(now, APPS_PER_CLAIM, this.lastServed);
    const seen = new Set(after);
    return { apps: [...after, ...first.filter((appId) => !seen.has(appId))].slice(0, APPS_PER_CLAIM), rotated: true };
  }

  /**
   * How many of the app's rows to hold claimed ahead: what its endpoint delivered here lately
   * (over at least PACE_MS) would deliver in half of CLAIM_AHEAD_MS, at most QUEUE_PER_APP. So a
   * queued row waits about half the window at most, and a slow or hanging endpoint gets none.
   */
  private depthOf(appId: string, now: number): number {
    const p = this.pace.get(appId);
    if (!p) {
      this.pace.set(appId, { done: 0, since: now, depth: 0 });
      return 0;
    }
    if (now - p.since >= PACE_MS) {
      p.depth = Math.min(QUEUE_PER_APP, Math.floor((p.done * (CLAIM_AHEAD_MS / 2)) / (now - p.since)));
      p.done = 0;
      p.since = now;
    }
    return p.depth;
  }

  /** Queued rows whose app has a free slot of its own (they start as soon as the instance has one). */
  private startableQueued(): number {
    let n = 0;
    for (const [appId, queue] of this.queued) n += Math.min(queue.length, Math.max(0, WEBHOOK_PER_APP_CONCURRENCY - (this.perApp.get(appId) ?? 0)));
    return n;
  }

  /** Rows of the app in flight or queued here. */
  private held(appId: string): number {
    return (this.perApp.get(appId) ?? 0) + (this.queued.get(appId)?.length ?? 0);
  }

  private enqueue(row: OutboxEntity, target: NonNullable<WebhookTarget['target']>): void {
    const queue = this.queued.get(row.appId) ?? [];
    // Claimed again (a manual retry let go of its claim): the new claim replaces the old entry.
    const i = queue.findIndex((q) => q.row.id === row.id);
    if (i >= 0) queue[i] = { row, target };
    else {
      queue.push({ row, target });
      this.queuedCount++;
    }
    this.queued.set(row.appId, queue);
  }

  /** Whether the row's claim still covers a whole delivery started now. */
  private startable(row: OutboxEntity, now: number): boolean {
    return row.claimedUntil !== null && row.claimedUntil - now >= this.config.webhooks.timeoutMs + CLAIM_MARGIN_MS;
  }

  /** Starts the app's queued rows while it has free slots (and the instance too); hands back rows that waited too long. */
  private pump(appId: string): void {
    const queue = this.queued.get(appId);
    if (!queue) return;
    const now = this.clock.now();
    const stale: string[] = [];
    while (queue.length > 0 && !this.stopped && (this.perApp.get(appId) ?? 0) < WEBHOOK_PER_APP_CONCURRENCY && this.inFlight.size < MAX_IN_FLIGHT) {
      const { row, target } = queue.shift()!;
      this.queuedCount--;
      if (!this.startable(row, now)) stale.push(row.id);
      else this.start(row, target);
    }
    // Served: to the back of the line (the map's order is the order pumpAll serves apps in).
    this.queued.delete(appId);
    if (queue.length > 0) this.queued.set(appId, queue);
    this.handBack(stale);
  }

  /** Every app's queue in turn, while the instance has free slots. */
  private pumpAll(): void {
    for (const appId of [...this.queued.keys()]) {
      if (this.inFlight.size >= MAX_IN_FLIGHT || this.stopped) break;
      this.pump(appId);
    }
  }

  /** Hands back queued rows whose time to start has passed (their claims would lapse during the delivery). */
  private dropStale(now: number): void {
    const stale: string[] = [];
    for (const [appId, queue] of this.queued) {
      const keep = queue.filter((q) => this.startable(q.row, now) || void stale.push(q.row.id));
      this.queuedCount -= queue.length - keep.length;
      if (keep.length > 0) this.queued.set(appId, keep);
      else this.queued.delete(appId);
    }
    this.handBack(stale);
  }

  private handBack(ids: string[]): void {
    if (ids.length === 0) return;
    this.repo.releaseClaimsOf(this.instanceId, ids).catch((err) => this.logger.warn({ err: String(err), count: ids.length }, 'claims not handed back; they lapse'));
  }

  /** Each app's target; an app whose target cannot be read (its secret does not decrypt) is left out of this round. */
  private async targetsOf(appIds: string[]): Promise<Map<string, WebhookTarget>> {
    const targets = new Map<string, WebhookTarget>();
    await Promise.all(
      appIds.map((appId) =>
        this.targets.get(appId).then(
          (t) => void targets.set(appId, t),
          (err) => this.logger.warn({ err: String(err), appId }, 'webhook target cannot be read; its deliveries wait'),
        ),
      ),
    );
    return targets;
  }

  private start(row: OutboxEntity, target: NonNullable<WebhookTarget['target']>): void {
    this.perApp.set(row.appId, (this.perApp.get(row.appId) ?? 0) + 1);
    const delivery: Promise<void> = this.deliver(row, target)
      .then((outcome) => {
        if (outcome) this.outcomes.push(outcome);
        this.recording ??= this.record();
      })
      .catch((err) => this.logger.warn({ err: String(err), eventId: row.id }, 'webhook delivery bookkeeping failed'))
      .finally(() => {
        const left = (this.perApp.get(row.appId) ?? 1) - 1;
        if (left > 0) this.perApp.set(row.appId, left);
        else this.perApp.delete(row.appId);
        this.inFlight.delete(delivery);
        const pace = this.pace.get(row.appId);
        if (pace) pace.done++;
        // A slot is free: the app's next claimed row starts now (or another app's, if the instance was full).
        this.pump(row.appId);
        if (this.queuedCount > 0 && this.inFlight.size < MAX_IN_FLIGHT) this.pumpAll();
        // The app's next due rows (or another app's) need not wait for the timer: refilled once
        // REFILL_AT of the app's places (half its queue, if deeper) are free, or at once when the
        // last claim left apps out for want of room in the instance; once per turn.
        const depth = pace?.depth ?? 0;
        if (this.held(row.appId) <= WEBHOOK_PER_APP_CONCURRENCY + depth - Math.max(REFILL_AT, depth / 2) || (this.crowded && this.inFlight.size <= MAX_IN_FLIGHT - 4 * REFILL_AT)) this.refillSoon();
      });
    this.inFlight.add(delivery);
  }

  private refillSoon(): void {
    if (this.refill) return;
    this.refill = true;
    setImmediate(() => {
      this.refill = false;
      void this.tick();
    });
  }

  /**
   * Records the outcomes gathered so far, many per statement, until none is left. A failure
   * leaves those rows claimed: the claims lapse and the events are delivered again (at least once).
   */
  private async record(): Promise<void> {
    try {
      // Outcomes of deliveries that finish in the same turn go in one statement.
      await new Promise((resolve) => setImmediate(resolve));
      while (this.outcomes.length > 0) {
        const batch = this.outcomes.splice(0, FINISH_BATCH);
        // Tried twice: a lost batch costs its events a second delivery, after their claims lapse.
        await this.repo
          .finishMany(this.instanceId, batch)
          .catch(() => this.repo.finishMany(this.instanceId, batch))
          .catch((err) => this.logger.warn({ err: String(err), count: batch.length }, 'delivery outcomes not recorded; those events will be delivered again'));
      }
    } finally {
      this.recording = null;
    }
  }

  /** One attempt; its outcome, or null when shutting down (the row is handed back). */
  private async deliver(row: OutboxEntity, target: NonNullable<WebhookTarget['target']>): Promise<DeliveryOutcome | null> {
    let body: string;
    try {
      body = JSON.stringify(this.outbox.deliverable(row));
    } catch {
      // A sealed field that does not open (unknown master key, moved or tampered row): never send it half.
      return { id: row.id, status: 'failed', deliveredAt: null, attempts: row.attempts + 1, lastError: 'payload cannot be decrypted', nextAttemptAt: null };
    }
    const timestamp = Math.floor(this.clock.now() / 1000);
    try {
      const status = await this.post(new URL(target.url), body, {
        'content-type': 'application/json',
        'user-agent': 'mfa-proxy-webhooks/1',
        'webhook-id': row.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signWebhook(target.secrets, row.id, timestamp, body),
      });
      if (status >= 200 && status < 300) return { id: row.id, status: 'delivered', deliveredAt: this.clock.now(), attempts: row.attempts + 1, lastError: null, nextAttemptAt: null };
      return this.retryLater(row, `HTTP ${status}`);
    } catch (err) {
      // Shutting down: the row is handed back (at least once: it is delivered again later).
      if (this.stopped) return null;
      return this.retryLater(row, err instanceof Error ? err.message : 'delivery failed');
    }
  }

  private retryLater(row: OutboxEntity, error: string): DeliveryOutcome {
    return failedAttempt(row, error, { now: this.clock.now(), maxAttempts: this.config.webhooks.maxAttempts, baseMs: this.config.webhooks.retryBaseMs, retry: 'pending', failed: 'failed' });
  }

  private async post(url: URL, body: string, headers: Record<string, string>): Promise<number> {
    const res = await postOutbound(url, body, headers, { timeoutMs: this.config.webhooks.timeoutMs, allowPrivate: this.config.webhookAllowPrivate, maxBytes: 1024, signal: this.aborter.signal, agents: this.agents });
    return res.status;
  }

  /** Manual retry of a failed (or pending) delivery, from the app. */
  retry(appId: string, id: string): Promise<boolean> {
    return this.repo.retry(appId, id, this.clock.now());
  }
}
