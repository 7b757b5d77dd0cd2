import { Controller, Get, Headers, HttpCode, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiProduces, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import type { FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import { CurrentApp, type AppPrincipal } from '../../common/auth/principals.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId } from '../../common/ids.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { EventStreamService, type StreamSink } from './event-stream.service.js';
import { LISTED_STATUSES, OutboxRepository, type ListedStatus } from './outbox.repository.js';
import { WebhookDispatcher } from './webhook-dispatcher.js';

export class DeliveriesQuery {
  @ApiPropertyOptional({ enum: Object.keys(LISTED_STATUSES) })
  @IsOptional() @IsIn(Object.keys(LISTED_STATUSES)) status?: ListedStatus;
  @ApiPropertyOptional({ description: 'Cursor: the nextCursor of the previous page' })
  @IsOptional() @IsString() @MaxLength(64) before?: string;
  @ApiPropertyOptional({ default: 50, minimum: 1, maximum: 200 })
  @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(200) limit?: number;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * The SSE response as a stream sink. `onClose` runs at once when the client is already gone: it
 * may have dropped while the guard authenticated the request, and its 'close' has then fired.
 */
function sseSink(raw: ServerResponse): StreamSink {
  return {
    write: (chunk) => void raw.write(chunk),
    end: () => void raw.end(),
    onClose: (fn) => {
      if (raw.destroyed || raw.socket?.destroyed) fn();
      else raw.once('close', fn);
    },
    buffered: () => raw.writableLength,
  };
}

@ApiTags('app: events')
@ApiBearerAuth('appKey')
@UseGuards(AppKeyGuard)
@ApiProblemResponses(400, 401, 404)
@Controller('v1')
export class EventsController {
  constructor(
    private readonly outbox: OutboxRepository,
    private readonly dispatcher: WebhookDispatcher,
    private readonly streams: EventStreamService,
  ) {}

  @Get('events/stream')
  @ApiOperation({ summary: "The app's events as Server-Sent Events (Last-Event-ID resumes); heartbeats every 15 s" })
  @ApiProduces('text/event-stream')
  @ApiOkResponse({ description: 'Server-Sent Events: `id`, `event` (the event type) and `data` (the event JSON)', content: { 'text/event-stream': { schema: { type: 'string' } } } })
  stream(@CurrentApp() app: AppPrincipal, @Headers('last-event-id') lastEventId: string | undefined, @Res() reply: FastifyReply): void {
    reply.hijack();
    reply.raw.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no', 'X-Request-Id': String(reply.request.id) });
    // No await between here and the close handler's registration (inside open).
    this.streams.open(app.appId, app.keyId, isId('event', lastEventId) ? lastEventId : undefined, sseSink(reply.raw));
  }

  @Get('webhook-deliveries')
  @ApiOperation({ summary: 'Delivery state of the app’s events, newest first' })
  @ApiOkResponse({ schema: { type: 'object', properties: { deliveries: { type: 'array', items: { type: 'object', additionalProperties: true } }, nextCursor: { type: 'string', nullable: true } }, example: { deliveries: [{ eventId: 'evt_...', type: 'step_up.created', status: 'delivered', attempts: 1 }], nextCursor: null } } })
  async deliveries(@CurrentApp() app: AppPrincipal, @Query() q: DeliveriesQuery) {
    const limit = q.limit ?? 50;
    const before = q.before ? await this.outbox.findForApp(app.appId, q.before) : null;
    if (q.before && !before) throw new AppError('validation_failed', 'before must be a nextCursor of this list');
    const rows = await this.outbox.deliveries(app.appId, { status: q.status, before: before ?? undefined, limit: limit + 1 });
    const page = rows.slice(0, limit);
    return {
      deliveries: page.map((r) => ({
        eventId: r.id, type: r.type, status: r.deliveryStatus, attempts: r.attempts, lastError: r.lastError,
        nextAttemptAt: r.deliveryStatus === 'pending' ? iso(r.nextAttemptAt) : null, deliveredAt: iso(r.deliveredAt), createdAt: iso(r.createdAt),
      })),
      nextCursor: rows.length > limit ? page[page.length - 1].id : null,
    };
  }

  @Post('webhook-deliveries/:eventId/retry')
  @HttpCode(200)
  @ApiOperation({ summary: 'Deliver an event again (e.g. after fixing the endpoint)' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['pending'] } } } })
  async retry(@CurrentApp() app: AppPrincipal, @Param('eventId') eventId: string): Promise<{ status: 'pending' }> {
    if (!isId('event', eventId) || !(await this.dispatcher.retry(app.appId, eventId))) throw notFound('delivery');
    return { status: 'pending' };
  }
}
