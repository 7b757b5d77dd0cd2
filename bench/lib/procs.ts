/**
 * Child processes of the bench: every server, load generator and seeder runs in its own process,
 * so none of them shares an event loop or a CPU-time slice with what it measures.
 * Everything started here is stopped here (by pid, never by name), also on error and Ctrl-C.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const running = new Set<ChildProcess>();

export interface Started {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code when the process ends. */
  exited: Promise<number | null>;
}

function track(name: string, child: ChildProcess, log: WriteStream | null): Started {
  running.add(child);
  if (log) {
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve(code ?? (signal ? 128 : null));
    });
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start`);
  return { name, child, pid: child.pid, exited };
}

/**
 * `node [flags] <script> [args]` with its output appended to `logFile`. BENCH_NODE_FLAGS (e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof`) go to every server it starts: profiles of one run.
 */
export function startNode(name: string, script: string, args: string[], env: Record<string, string>, logFile: string, cwd?: string, flags: string[] = []): Started {
  const log = createWriteStream(logFile, { flags: 'a' });
  const all = [...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean), ...flags];
  const child = spawn(process.execPath, [...all, script, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  return track(name, child, log);
}

/** A compiled bench module run with an IPC channel: one request message in, one result message out. */
export async function runIpc<T>(name: string, script: string, message: unknown, env: Record<string, string> = {}): Promise<T> {
  const child = fork(script, [], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const started = track(name, child, null);
  return new Promise<T>((resolve, reject) => {
    let result: { ok: true; value: T } | { ok: false; error: string } | null = null;
    child.on('message', (m) => (result = m as typeof result));
    child.once('error', reject);
    void started.exited.then((code) => {
      if (result?.ok) resolve(result.value);
      else reject(new Error(`${name} failed (exit ${code}): ${result && !result.ok ? result.error : 'no result'}`));
    });
    child.send(message as object);
  });
}

/** The child side of runIpc: handles one message, sends the result, exits. */
export function serveIpcOnce<I, O>(handler: (input: I) => Promise<O>): void {
  process.once('message', (input) => {
    handler(input as I).then(
      (value) => process.send!({ ok: true, value }, () => process.exit(0)),
      (err: unknown) => process.send!({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () => process.exit(1)),
    );
  });
}

export async function stop(p: Started, graceMs = 8_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const done = await Promise.race([p.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

/** Kills whatever is still running (error paths, Ctrl-C). */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
}

let cleanupInstalled = false;
/** On Ctrl-C / SIGTERM: run `cleanup`, kill every child, exit 130. */
export function installCleanup(cleanup: () => Promise<void>): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const onSignal = (sig: string) => {
    console.error(`\n${sig}: stopping everything the bench started…`);
    void cleanup()
      .catch(() => undefined)
      .finally(() => {
        killAll();
        process.exit(130);
      });
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('exit', killAll);
}

/** Polls `url` until it answers (any status below 500), or fails after `timeoutMs`. */
export async function waitForHttp(url: string, p: Started, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited (code ${p.child.exitCode}) before answering ${url}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.status < 500) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${p.name} did not answer ${url} within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** CPU time (user + system, all threads) a process has used, in clock ticks (1/100 s); 0 if unreadable. */
export function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ). */
export const TICKS_PER_S = 100;

/**
 * Waits until the given processes are quiet (together under `maxCores` × one core for a whole
 * second): background work a server left behind (sealing, dispatching, GC) is not billed to the
 * next measurement. Gives up after `timeoutMs` and says so.
 */
export async function settle(pids: number[], timeoutMs = 20_000, maxCores = 0.08): Promise<{ ms: number; settled: boolean }> {
  const start = Date.now();
  let before = pids.reduce((s, pid) => s + cpuTicks(pid), 0);
  while (Date.now() - start < timeoutMs) {
    await sleep(1_000);
    const now = pids.reduce((s, pid) => s + cpuTicks(pid), 0);
    const used = (now - before) / TICKS_PER_S;
    before = now;
    if (used <= maxCores) return { ms: Date.now() - start, settled: true };
  }
  return { ms: Date.now() - start, settled: false };
}
