import { Logger } from '@nestjs/common';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { DataSource } from 'typeorm';

/** How often the worker checkpoints the WAL. */
const INTERVAL_MS = 100;
/**
 * The service's connection checkpoints only past this many WAL frames (pages; SQLite's default is
 * 1,000): a fallback while the worker runs, for writes that come without a pause. It then copies
 * only the frames the worker has not, and the WAL starts over. Without the worker, the default.
 */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 4_000;
const DEFAULT_AUTOCHECKPOINT_PAGES = 1_000;

/**
 * The worker: its own connection to the database file, a PASSIVE checkpoint every INTERVAL_MS. A
 * PASSIVE checkpoint takes no write lock and waits for no one: the service's writes go on while
 * it copies. But the WAL starts again from its beginning only when a write transaction begins
 * with every frame already copied, and by the time a pass ends the service has often added
 * frames. So passes repeat, 1 ms apart, until one finds no frame added since the one before (at
 * most 10): after any pause in the writes, the service's next transaction rewinds the WAL. Writes
 * without a pause leave no such moment, and the WAL grows to the fallback threshold, where the
 * service's connection finishes the copy (what the worker has not copied yet) and the WAL starts
 * over. Plain JavaScript, evaluated: no file to find beside the compiled or the TypeScript source.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
const pause = new Int32Array(new SharedArrayBuffer(4));
let reported = { error: '', at: 0 };
const checkpoint = () => {
  try {
    let before = -1;
    for (let pass = 0; pass < 10; pass++) {
      const [r] = db.pragma('wal_checkpoint(PASSIVE)');
      if (!r || r.log <= before) break;
      before = r.log;
      Atomics.wait(pause, 0, 0, 1);
    }
  } catch (err) {
    // Reported when it changes, else once a minute: not ten log lines a second.
    const error = String((err && err.message) || err);
    if (error !== reported.error || Date.now() - reported.at > 60000) {
      reported = { error, at: Date.now() };
      parentPort.postMessage({ error });
    }
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
parentPort.postMessage({ ready: true });
`;

interface MainConnection {
  pragma(sql: string, options?: { simple: boolean }): unknown;
}

/**
 * WAL checkpoints of the embedded SQLite database, off the event loop. SQLite checkpoints in the
 * commit that takes the WAL past `wal_autocheckpoint` pages: that commit copies the WAL into the
 * database file and syncs both, 5–12 ms of blocked event loop under the verify bench (the longest
 * COMMITs the statement timing saw). A worker thread with its own connection does it instead; the
 * service's connection keeps a higher threshold as a fallback, and goes back to SQLite's default
 * if the worker fails. Not for `:memory:` (one connection, nothing to share).
 */
export class SqliteCheckpointer {
  private readonly logger = new Logger(SqliteCheckpointer.name);
  private stopping: Promise<void> | null = null;
  private exited = false;

  private constructor(
    private readonly worker: Worker,
    private readonly db: MainConnection,
  ) {
    worker.on('message', (m: { ready?: true; error?: string }) => {
      if (m.ready && !this.stopping) {
        this.threshold(FALLBACK_AUTOCHECKPOINT_PAGES);
        // The WAL file is cut back to the fallback threshold's size when it starts over (SQLite
        // otherwise keeps its largest size on disk), in the file's own pages (4 KiB unless it was made otherwise).
        const pageSize = Number(this.pragma('page_size', true));
        if (pageSize > 0) this.pragma(`journal_size_limit = ${FALLBACK_AUTOCHECKPOINT_PAGES * pageSize}`);
      }
      if (m.error) this.logger.warn({ err: m.error }, 'WAL checkpoint failed; the worker retries every 100 ms (this is logged again if the error changes, or after a minute)');
    });
    worker.on('error', (err) => this.logger.error({ err: String(err) }, 'WAL checkpoint worker failed'));
    worker.on('exit', (code) => {
      this.exited = true;
      if (this.stopping) return;
      this.logger.warn({ code }, 'WAL checkpoint worker stopped: the service connection checkpoints again');
      this.threshold(DEFAULT_AUTOCHECKPOINT_PAGES);
    });
    worker.unref();
  }

  /** The service connection's own checkpoint threshold. */
  private threshold(pages: number): void {
    this.pragma(`wal_autocheckpoint = ${pages}`);
  }

  /** A setting of the service connection, or its value when `simple` (nothing once that connection is closed). */
  private pragma(sql: string, simple = false): unknown {
    try {
      return this.db.pragma(sql, { simple });
    } catch {
      // The connection is closed: nothing left to checkpoint.
      return undefined;
    }
  }

  /** Starts the worker for a file-backed better-sqlite3 data source (null otherwise). */
  static start(ds: DataSource): SqliteCheckpointer | null {
    if (ds.options.type !== 'better-sqlite3' || ds.options.database === ':memory:') return null;
    const db = (ds.driver as unknown as { databaseConnection: MainConnection & { name: string } }).databaseConnection;
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, path: db.name, intervalMs: INTERVAL_MS } });
    return new SqliteCheckpointer(worker, db);
  }

  /** A last checkpoint, then the worker's connection is closed (before the service's own); ended after 5 s at most. */
  stop(): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      if (this.exited) return resolve();
      const timeout = setTimeout(() => void this.worker.terminate(), 5_000);
      this.worker.once('exit', () => {
        clearTimeout(timeout);
        resolve();
      });
      this.worker.postMessage('stop');
    });
    return this.stopping;
  }
}

/** Starts the checkpointer for `ds` and stops it when the data source is destroyed. */
export function checkpointSqliteInBackground(ds: DataSource): void {
  const checkpointer = SqliteCheckpointer.start(ds);
  if (!checkpointer) return;
  const destroy = ds.destroy.bind(ds);
  ds.destroy = async () => {
    await checkpointer.stop();
    return destroy();
  };
}
