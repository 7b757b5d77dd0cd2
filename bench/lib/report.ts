/**
 * Medians and the markdown/console tables of a bench run (no figure is ever typed in by hand:
 * everything printed comes from the LoadResults of this run).
 */
import type { LoadResult } from '../load.js';
import type { DbKind, PathName } from './options.js';

export type TargetName = 'service' | 'service2' | 'floor' | 'peer';

export interface PathResults {
  path: PathName;
  rounds: Partial<Record<TargetName, LoadResult[]>>;
  /** 2 instances: each instance's rounds, side by side. */
  perInstance?: [LoadResult[], LoadResult[]];
  /** verify only: what the database says was consumed, against the valid answers. */
  consumed?: { service: ConsumeTally; floor: ConsumeTally };
}

/** Verify's exactly-once evidence: answers against what the database says. */
export interface ConsumeTally {
  /** `{"valid":true}` answers received. */
  valid: number;
  /** Tokens sent (each exactly once). */
  sent: number;
  /** Rows of that app with consumed_at set. */
  consumed: number;
  seeded: number;
  /** Requests that can be in flight when the load stops (connections × measurements): sent, maybe consumed, never answered. */
  inFlightMax: number;
}

export interface DbReport {
  db: DbKind;
  label: string;
  paths: PathResults[];
  instances: 1 | 2;
  notes: string[];
}

export const PATH_TITLES: Record<PathName, { title: string; peer: string }> = {
  token: { title: '`POST /oauth/token` (client credentials → ES256 JWT)', peer: 'oidc-provider 9 (JWT access token)' },
  whoami: { title: 'agent-token auth `GET /v1/whoami`', peer: 'minimal Nest 12 / Fastify + jose guard' },
  verify: { title: 'verify-and-consume `POST /v1/mfa-proxy-tokens/verify` (fresh valid token each)', peer: 'oidc-provider 9 introspection (in memory, not single use)' },
};

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const ms = (n: number) => (Number.isFinite(n) ? `${n} ms` : '–');
const us = (n: number) => (Number.isFinite(n) ? `${Math.round(n)} µs` : '–');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–');

export function summarize(rs: LoadResult[] | undefined): { rate: number; p50: number; p99: number; cpu: number; failures: string; exhausted: boolean } {
  if (!rs?.length) return { rate: NaN, p50: NaN, p99: NaN, cpu: NaN, failures: '–', exhausted: false };
  const sum = (f: (r: LoadResult) => number) => rs.reduce((s, r) => s + f(r), 0);
  return {
    rate: median(rs.map((r) => r.okPerSec)),
    p50: median(rs.map((r) => r.p50)),
    p99: median(rs.map((r) => r.p99)),
    cpu: median(rs.map((r) => r.cpuUsPerOk ?? NaN).filter(Number.isFinite)),
    failures: `${sum((r) => r.non2xx)} / ${sum((r) => r.errors + r.timeouts)} / ${sum((r) => r.invalid)}`,
    exhausted: rs.some((r) => r.exhausted),
  };
}

export function reasonsOf(rs: LoadResult[] | undefined): string {
  const all: Record<string, number> = {};
  for (const r of rs ?? []) for (const [k, v] of Object.entries(r.reasons)) all[k] = (all[k] ?? 0) + v;
  return Object.entries(all).map(([k, v]) => `${k}: ${v}`).join(', ');
}

export function markdownTable(r: DbReport): string {
  const lines = [
    '| path | mfa-proxy req/s | p50 | p99 | CPU per success | non-2xx / errors / invalid | floor req/s | floor p99 | floor CPU | ratio | peer req/s | peer p99 | peer CPU | ratio | peer |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const p of r.paths) {
    const s = summarize(p.rounds.service);
    const f = summarize(p.rounds.floor);
    const q = summarize(p.rounds.peer);
    lines.push(`| ${PATH_TITLES[p.path].title} | ${fmt(s.rate)}${s.exhausted ? ' (tokens ran out)' : ''} | ${ms(s.p50)} | ${ms(s.p99)} | ${us(s.cpu)} | ${s.failures} | ${fmt(f.rate)} | ${ms(f.p99)} | ${us(f.cpu)} | ${ratio(s.rate, f.rate)} | ${fmt(q.rate)} | ${ms(q.p99)} | ${us(q.cpu)} | ${ratio(s.rate, q.rate)} | ${PATH_TITLES[p.path].peer} |`);
  }
  const out = [lines.join('\n')];
  if (r.instances === 2) {
    const rows = [
      '| path | 1 instance req/s | 2 instances total req/s | per instance (a / b) | per instance ÷ 1 instance | p99 (2 instances) | CPU per success, 1 instance | CPU per success, 2 instances | capacity per instance ÷ 1 instance, by CPU | non-2xx / errors / invalid |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const p of r.paths) {
      if (!p.perInstance) continue;
      const one = summarize(p.rounds.service);
      const two = summarize(p.rounds.service2);
      const a = summarize(p.perInstance[0]).rate;
      const b = summarize(p.perInstance[1]).rate;
      rows.push(`| ${PATH_TITLES[p.path].title} | ${fmt(one.rate)} | ${fmt(two.rate)} | ${fmt(a)} / ${fmt(b)} | ${ratio(two.rate / 2, one.rate)} | ${ms(two.p99)} | ${us(one.cpu)} | ${us(two.cpu)} | ${ratio(one.cpu, two.cpu)} | ${two.failures} |`);
    }
    out.push(
      'Two service processes on the same database and Redis, the connections split evenly (one load process per instance). ' +
        'On a machine with fewer cores than the instances, the load generators, the database and Redis, req/s per instance measures the machine: the two instances share its cores. ' +
        "CPU per success depends less on it: it is both processes' CPU time over all their successes. It rises with the work an instance does because another exists " +
        '(cache invalidations, background work done twice), but also with sharing the cores (context switches, colder caches) and with half the connections per instance ' +
        '(smaller group commits and Redis pipelines), which instances with cores of their own and their own load would not pay. ' +
        'Capacity per instance by CPU, 1-instance CPU ÷ 2-instance CPU per success, is therefore probably pessimistic about what each instance would serve relative to one alone ' +
        '(not a bound: a process given less CPU also handles more requests per loop turn and writes larger batches; the database, Redis and waits on locks are not in it).' +
        `\n\n${rows.join('\n')}`,
    );
  }
  for (const p of r.paths) {
    if (!p.consumed) continue;
    const c = p.consumed;
    const n = (x: number) => x.toLocaleString('en-US');
    // Each token is sent once: valid ≤ consumed ≤ sent, and consumed − valid are requests in flight when a round stopped.
    const check = (x: ConsumeTally) =>
      x.valid <= x.consumed && x.consumed <= x.sent && x.consumed - x.valid <= x.inFlightMax
        ? `consistent with exactly once: ${n(x.consumed - x.valid)} consumed but unanswered were in flight when a round stopped (at most ${n(x.inFlightMax)})`
        : '**inconsistent with exactly once**';
    const line = (who: string, x: ConsumeTally) => `${who}: ${n(x.sent)} tokens sent (each once) of ${n(x.seeded)} seeded, ${n(x.valid)} answered \`{"valid":true}\`, ${n(x.consumed)} consumed in the database (${check(x)}).`;
    out.push(`Verify, exactly once:\n- ${line('mfa-proxy', c.service)}\n- ${line('floor', c.floor)}` + (reasonsOf(p.rounds.service) ? `\n- mfa-proxy refusals by reason: ${reasonsOf(p.rounds.service)}.` : ''));
  }
  return out.join('\n\n');
}
