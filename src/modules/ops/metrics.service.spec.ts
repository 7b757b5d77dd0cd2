import { describe, expect, it } from 'vitest';
import { MetricsService } from './metrics.service.js';

describe(MetricsService.name, () => {
  it('counts each (method, route, status) apart in http_request_duration_seconds, however often each recurs', async () => {
    const sut = new MetricsService();
    for (let i = 0; i < 3; i++) sut.observe('POST', '/oauth/token', 200, 0.004);
    sut.observe('POST', '/oauth/token', 401, 0.002);
    sut.observe('GET', '/v1/whoami', 200, 0.02);
    sut.observe('POST', '/oauth/token', 200, 0.3);
    const { values } = (await sut.httpDuration.get()) as { values: { metricName?: string; labels: Record<string, string | number>; value: number }[] };
    const count = (method: string, route: string, status: string) =>
      values.find((v) => v.metricName === 'http_request_duration_seconds_count' && v.labels.method === method && v.labels.route === route && v.labels.status === status)?.value;
    const sum = (method: string, route: string, status: string) =>
      values.find((v) => v.metricName === 'http_request_duration_seconds_sum' && v.labels.method === method && v.labels.route === route && v.labels.status === status)?.value;
    expect(count('POST', '/oauth/token', '200')).toBe(4);
    expect(sum('POST', '/oauth/token', '200')).toBeCloseTo(0.312, 9);
    expect(count('POST', '/oauth/token', '401')).toBe(1);
    expect(count('GET', '/v1/whoami', '200')).toBe(1);
    expect(count('GET', '/oauth/token', '200')).toBeUndefined();
    // The text exposition Prometheus scrapes.
    expect(await sut.registry.metrics()).toContain('http_request_duration_seconds_count{method="POST",route="/oauth/token",status="200"} 4');
  });
});
