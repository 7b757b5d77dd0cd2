import { TtlCache } from './ttl-cache.js';

/** How long a load in flight is shared with new callers (ms). */
export const JOIN_WINDOW_MS = 1_000;

/**
 * A TtlCache that loads its own misses, for the principal caches of the hot paths:
 * - Concurrent misses of one key share one load. Entries filled under load expire together; without
 *   this, every request arriving during the load's round trip made its own query (up to one per
 *   open connection).
 * - An invalidation wins over a load in flight. A change (key revoked, agent suspended, task ended)
 *   may commit while a load that read the old row is still in flight. That load's result goes to the
 *   callers already waiting (they asked before the invalidation, as a request served from the cache
 *   in that instant would), but it is not cached, and a caller after the invalidation starts a load
 *   of its own. Otherwise the old row would be served for a whole lifetime after the change.
 * - A load is joined for JOIN_WINDOW_MS only: a caller after that starts a new one. A query stuck on
 *   a dead connection then holds up the requests of its first second, not every request for its key
 *   until it ends; when it does end, its result is not cached (it is no longer the key's load).
 * - A load that yields null (nothing found; `Miss` is `null` for loads that may find nothing) or
 *   fails caches nothing and is not shared after it settles.
 */
export class LoadingCache<V, Miss extends null = never> {
  private readonly entries: TtlCache<V>;
  private readonly loads = new Map<string, { pending: Promise<V | Miss>; startedAt: number }>();

  constructor(
    private readonly load: (key: string) => Promise<V | Miss>,
    ttlMs: number,
    maxEntries?: number,
    private readonly now: () => number = Date.now,
  ) {
    this.entries = new TtlCache(ttlMs, maxEntries, now);
  }

  /** The cached value, or the load in flight for the key (if it started less than JOIN_WINDOW_MS ago), or a new load. */
  get(key: string): V | Promise<V | Miss> {
    const hit = this.entries.get(key);
    if (hit !== undefined) return hit;
    const inFlight = this.loads.get(key);
    return inFlight && this.now() - inFlight.startedAt < JOIN_WINDOW_MS ? inFlight.pending : this.start(key);
  }

  /** The cached value only, without loading: for checks that must cost no query. */
  peek(key: string): V | undefined {
    return this.entries.get(key);
  }

  delete(key: string): void {
    this.entries.delete(key);
    this.loads.delete(key);
  }

  /** Drops the entries the predicate selects, and every load in flight: what a load will yield is not known yet. */
  deleteWhere(predicate: (value: V, key: string) => boolean): void {
    this.entries.deleteWhere(predicate);
    this.loads.clear();
  }

  clear(): void {
    this.entries.clear();
    this.loads.clear();
  }

  private start(key: string): Promise<V | Miss> {
    // Still this key's load when it settles: no invalidation came in between (it would have removed
    // it), nor a caller past the join window (it would have replaced it).
    const current = () => this.loads.get(key)?.pending === pending;
    const pending: Promise<V | Miss> = this.load(key).then(
      (value) => {
        if (current()) {
          this.loads.delete(key);
          if (value !== null) this.entries.set(key, value as V);
        }
        return value;
      },
      (error: unknown) => {
        if (current()) this.loads.delete(key);
        throw error;
      },
    );
    this.loads.set(key, { pending, startedAt: this.now() });
    return pending;
  }
}
