import { Controller, Get, Header, Inject, Res } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import type { FastifyReply } from 'fastify';
import type { Redis } from 'ioredis';
import { DataSource } from 'typeorm';
import { REDIS } from '../../common/redis.js';
import { MetricsService } from './metrics.service.js';

async function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const READINESS_SCHEMA = { type: 'object' as const, properties: { status: { type: 'string' as const, enum: ['ok', 'unavailable'] }, checks: { type: 'object' as const, additionalProperties: { type: 'string' as const, enum: ['ok', 'unreachable'] } } }, example: { status: 'ok', checks: { database: 'ok', redis: 'ok' } } };

@ApiTags('operations')
@Controller()
export class OpsController {
  constructor(
    private readonly ds: DataSource,
    private readonly metrics: MetricsService,
    @Inject(REDIS) private readonly redis: Redis | null,
  ) {}

  @Get('healthz')
  @ApiOperation({ summary: 'Liveness: the process is up' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } }, example: { status: 'ok' } } })
  @ApiProblemResponses(431)
  healthz(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('readyz')
  @ApiOperation({ summary: 'Readiness: the database (and Redis, when configured) answer' })
  @ApiOkResponse({ schema: READINESS_SCHEMA })
  @ApiServiceUnavailableResponse({ description: 'A dependency is unreachable (the same body, status "unavailable")', schema: READINESS_SCHEMA })
  @ApiProblemResponses(431)
  async readyz(@Res({ passthrough: true }) reply: FastifyReply): Promise<{ status: string; checks: Record<string, string> }> {
    const checks: Record<string, string> = {};
    checks.database = await within(2000, this.ds.query('SELECT 1')).then(() => 'ok', () => 'unreachable');
    if (this.redis) checks.redis = await within(2000, this.redis.ping()).then(() => 'ok', () => 'unreachable');
    const ok = Object.values(checks).every((v) => v === 'ok');
    reply.status(ok ? 200 : 503);
    return { status: ok ? 'ok' : 'unavailable', checks };
  }

  @Get('metrics')
  @ApiExcludeEndpoint()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
