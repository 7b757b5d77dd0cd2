import { Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PubSub } from '../../common/cache/pubsub.js';
import { OutboxRepository } from './outbox.repository.js';

/**
 * Pub/sub hint to every instance's stream poller: positions up to `head` are published. `pending`:
 * whether any of them waits for a webhook delivery (the dispatchers wake only then).
 */
export const OUTBOX_PUBLISHED = 'outbox.published';

/** Safety net for commits this process did not see (another instance without Redis, a lost hint). */
const FALLBACK_MS = 1_000;
/** Another publisher holds the turn, or (SQLite) a transaction is open: try again this soon. */
const BUSY_RETRY_MS = 10;
const BATCH = 500;
/**
 * While commits keep nudging, rounds start at most this often (a full batch goes on at once). Each
 * round is a transaction of four statements; under load one ran after every consume batch's
 * commit (55 rounds a second at 2,000 verifications/s) for a dozen rows each.
 */
const MIN_ROUND_GAP_MS = 50;

/**
 * Publication of the outbox to the event stream (issue 11 item 1).
 *
 * `created_at` is read inside the writing transaction, so ordering the stream by it skips a row
 * whose transaction commits after a later-stamped one was already sent (a transaction waiting on
 * a row lock; a clock behind). Instead, a row gets its stream position AFTER it commits: one
 * publisher at a time per database (a PostgreSQL advisory lock; SQLite is one process, and
 * publishes only when no transaction is open on its one connection) gives every committed,
 * unpublished row the next positions, in one transaction. Positions therefore become visible in
 * increasing order, all of one pass at once, each pass after the previous one committed: a
 * reader that has seen position n can never later find a row below n. Streams page by position
 * (`stream_seq > lastSeen`), so a late commit is simply a later position, never a gap, and
 * `Last-Event-ID` (the event id) resumes at that event's position.
 *
 * Wakes after the commit of every transaction that added events (OutboxRepository.onAddedCommitted),
 * with a slow fallback poll that costs one index probe when there is nothing to publish.
 */
@Injectable()
export class OutboxPublisher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(OutboxPublisher.name);
  private timer: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  /** Whether a commit nudged since the last round began (then the round need not probe for rows first). */
  private committed = false;
  /** When the next round may start (MIN_ROUND_GAP_MS after the last, unless it was full). */
  private nextRoundAt = 0;
  private stopped = false;

  constructor(
    private readonly repo: OutboxRepository,
    private readonly pubsub: PubSub,
  ) {}

  onApplicationBootstrap(): void {
    this.repo.onAddedCommitted(() => this.nudge(true));
    this.timer = setInterval(() => this.nudge(), FALLBACK_MS);
    this.timer.unref();
    this.nudge();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retry) clearTimeout(this.retry);
    await this.running;
  }

  /** Publishes what has committed, soon; calls coalesce. `committed`: a transaction that added events has committed. */
  nudge(committed = false): void {
    if (this.stopped) return;
    if (committed) this.committed = true;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.run().finally(() => (this.running = null));
  }

  /** Publication rounds until nothing is left (or another publisher has the turn). */
  private async run(): Promise<void> {
    try {
      do {
        // Commits in the meantime are published by this round (they set `again` until it starts).
        await pause(this.nextRoundAt - performance.now());
        if (this.stopped) return;
        this.again = false;
        const started = performance.now();
        const probe = !this.committed;
        this.committed = false;
        const result = await this.repo.publish(BATCH, probe);
        if (result === 'busy') {
          this.retry ??= setTimeout(() => {
            this.retry = null;
            this.nudge();
          }, BUSY_RETRY_MS);
          return;
        }
        if (result.published > 0) {
          await this.pubsub.publish(OUTBOX_PUBLISHED, { head: result.head, pending: result.pending }).catch(() => undefined);
          if (result.published === BATCH) this.again = true;
        }
        // The gap holds back rounds behind one that published a few rows; after a full one, or an
        // empty one (the fallback tick's), the next round may start at once.
        this.nextRoundAt = result.published > 0 && result.published < BATCH ? started + MIN_ROUND_GAP_MS : 0;
      } while (this.again && !this.stopped);
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'outbox publication failed; retrying on the next tick');
    }
  }
}

const pause = (ms: number) => (ms > 0 ? new Promise<void>((resolve) => setTimeout(resolve, ms)) : Promise.resolve());
