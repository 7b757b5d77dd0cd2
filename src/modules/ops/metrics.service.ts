import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of this process (one registry per app instance, so tests can run several). */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  /** Throttles that failed open because Redis was unreachable (see README, rate limits). */
  readonly failOpen = new Counter({
    name: 'mfa_proxy_fail_open_total',
    help: 'Requests let through because a shared store was unreachable',
    labelNames: ['component'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * The histogram's child per (method, route pattern, status): `labels()` builds and validates a
   * label object and two closures on every call. Routes are Fastify's patterns or 'unmatched', never
   * raw URL text, and methods those Node's parser knows: one entry per series the histogram has anyway.
   */
  private readonly durations = new Map<string, Histogram.Internal<'method' | 'route' | 'status'>>();

  observe(method: string, route: string, status: number, seconds: number): void {
    const name = `${method} ${status} ${route}`;
    let child = this.durations.get(name);
    if (child === undefined) {
      child = this.httpDuration.labels(method, route, String(status));
      this.durations.set(name, child);
    }
    child.observe(seconds);
  }
}
