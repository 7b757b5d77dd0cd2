/**
 * The load generator, in its own process (forked by the bench for each measurement, so it never
 * shares an event loop with a server): autocannon 9 with the same settings for every server.
 * Only real successes count: a 2xx whose body says so (`access_token`, `"valid":true`,
 * `"active":true`); anything else is reported as non-2xx, error, timeout or invalid.
 * Verify rounds send each pre-minted token exactly once, in order.
 */
import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';
import { serveIpcOnce } from './lib/procs.js';

export type Expect = 'status' | 'access_token' | 'valid' | 'active';

export interface LoadRequest {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  connections: number;
  seconds: number;
  expect: Expect;
  /** Authorization headers used round robin, one per request (client authentication). */
  authorizations?: string[];
  /** Bodies used round robin (e.g. introspection forms). */
  bodies?: string[];
  /** Verify: one body per token from these files (in order); each token is sent once. */
  verify?: { tokensFiles: string[]; action: string; resource: string | null; details: Record<string, unknown> };
  /** A fixed request rate over all connections (the soak); unlimited when absent. */
  overallRate?: number;
}

export interface LoadResult {
  /**
   * autocannon's `requests.sent`. With a fixed rate it counts `rate` requests per connection at
   * start that it never sends (lib/run.js), so it exceeds the requests answered by connections × rate
   * per run: compare successes with `answered`.
   */
  sent: number;
  /** Requests that got an answer (any status). */
  answered: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** 2xx answers that were not a success (refused verify, inactive token, no access_token). */
  invalid: number;
  /** Non-2xx answers by status code. */
  statuses: Record<string, number>;
  /** Why verifies were refused, by reason. */
  reasons: Record<string, number>;
  seconds: number;
  okPerSec: number;
  p50: number;
  p99: number;
  /** The pre-minted tokens ran out before the end (the round stopped early). */
  exhausted: boolean;
  /** Verify: tokens sent (each once); those still in flight when the round stopped have no answer. */
  tokensSent: number;
  /**
   * CPU time the server process used per success, in µs: from the start of the load until the
   * server was idle again (its background work included), set by the bench runner. A figure
   * that a busy neighbour on the machine moves far less than req/s.
   */
  cpuUsPerOk?: number;
}

function succeeded(expect: Expect, body: string, reasons: Record<string, number>): boolean {
  if (expect === 'status') return true;
  if (expect === 'access_token') return body.includes('"access_token"');
  try {
    const parsed = JSON.parse(body) as { valid?: boolean; active?: boolean; reason?: string };
    if (expect === 'active') return parsed.active === true;
    if (parsed.valid === true) return true;
    const r = parsed.reason ?? 'unknown';
    reasons[r] = (reasons[r] ?? 0) + 1;
    return false;
  } catch {
    reasons.unparsable = (reasons.unparsable ?? 0) + 1;
    return false;
  }
}

async function load(req: LoadRequest): Promise<LoadResult> {
  const reasons: Record<string, number> = {};
  const statuses: Record<string, number> = {};
  let ok = 0;
  let invalid = 0;
  let exhausted = false;
  let next = 0;
  let verifyBodies: string[] | null = null;
  if (req.verify) {
    const { action, resource, details } = req.verify;
    verifyBodies = req.verify.tokensFiles
      .flatMap((f) => readFileSync(f, 'utf8').split('\n'))
      .filter(Boolean)
      .map((token) => JSON.stringify(resource === null ? { token, action, details } : { token, action, resource, details }));
  }
  const rotating = req.authorizations ?? req.bodies ?? verifyBodies;
  let instance: autocannon.Instance | undefined;

  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: req.url,
        method: req.method,
        headers: req.headers,
        body: req.body,
        connections: req.connections,
        duration: req.seconds,
        ...(req.overallRate ? { overallRate: req.overallRate } : {}),
        requests: [
          {
            setupRequest: (r) => {
              if (!rotating) return r;
              if (verifyBodies) {
                if (next >= verifyBodies.length) {
                  if (!exhausted) (exhausted = true), setImmediate(() => instance?.stop());
                  return { ...r, body: verifyBodies[verifyBodies.length - 1] };
                }
                return { ...r, body: verifyBodies[next++] };
              }
              const v = rotating[next++ % rotating.length];
              return req.authorizations ? { ...r, headers: { ...r.headers, authorization: v } } : { ...r, body: v };
            },
            onResponse: (status, body) => {
              if (status < 200 || status > 299) return void (statuses[status] = (statuses[status] ?? 0) + 1);
              if (succeeded(req.expect, body, reasons)) ok++;
              else invalid++;
            },
          },
        ],
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
  const seconds = result.duration;
  return {
    sent: result.requests.sent,
    answered: result.requests.total,
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    invalid,
    statuses,
    reasons,
    seconds,
    okPerSec: seconds > 0 ? ok / seconds : 0,
    p50: result.latency.p50,
    p99: result.latency.p99,
    exhausted,
    tokensSent: verifyBodies ? Math.min(next, verifyBodies.length) : 0,
  };
}

serveIpcOnce(load);
