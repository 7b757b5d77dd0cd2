import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { PubSub } from '../../common/cache/pubsub.js';
import { ShutdownState } from '../../common/shutdown.js';
import { KEY_REVOKED } from '../apps/apps.service.js';
import { OutboxEntity } from './outbox.entity.js';

const POLL_MS = 500;
const HEARTBEAT_MS = 15_000;

export interface StreamSink {
  write(chunk: string): void;
  end(): void;
  onClose(fn: () => void): void;
}

/**
 * The app's events as Server-Sent Events, read from the outbox (so every instance serves every
 * event, and `Last-Event-ID` resumes). Wakes on pub/sub hints, polls as a fallback, sends
 * heartbeats, and ends when the API key it was opened with is revoked.
 */
@Injectable()
export class EventStreamService {
  constructor(
    private readonly ds: DataSource,
    private readonly pubsub: PubSub,
    private readonly shutdown: ShutdownState,
  ) {}

  async open(appId: string, keyId: string, lastEventId: string | undefined, sink: StreamSink): Promise<void> {
    let cursor = await this.startCursor(appId, lastEventId);
    let closed = false;
    let busy = false;
    const pump = async () => {
      if (closed || busy) return;
      busy = true;
      try {
        for (;;) {
          const rows = await this.after(appId, cursor);
          for (const row of rows) {
            if (closed) return;
            sink.write(`id: ${row.id}\nevent: ${row.type}\ndata: ${JSON.stringify(row.payload)}\n\n`);
            cursor = { createdAt: row.createdAt, id: row.id };
          }
          if (rows.length < 100) break;
        }
      } catch {
        /* the next tick retries */
      } finally {
        busy = false;
      }
    };
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(poll);
      clearInterval(heartbeat);
      offChanged();
      offRevoked();
      offShutdown();
      sink.end();
    };
    const poll = setInterval(() => void pump(), POLL_MS);
    const heartbeat = setInterval(() => !closed && sink.write(': heartbeat\n\n'), HEARTBEAT_MS);
    const offChanged = this.pubsub.subscribe('step-up.changed', () => void pump());
    const offRevoked = this.pubsub.subscribe(KEY_REVOKED, (m) => m.keyId === keyId && close());
    const offShutdown = this.shutdown.onClosing(close);
    sink.onClose(close);
    sink.write(': connected\n\n');
    await pump();
  }

  private async startCursor(appId: string, lastEventId: string | undefined): Promise<{ createdAt: number; id: string }> {
    if (lastEventId) {
      const row = await this.ds.getRepository(OutboxEntity).findOneBy({ appId, id: lastEventId });
      if (row) return { createdAt: row.createdAt, id: row.id };
    }
    return { createdAt: Date.now(), id: '' };
  }

  private after(appId: string, c: { createdAt: number; id: string }): Promise<OutboxEntity[]> {
    return this.ds
      .getRepository(OutboxEntity)
      .createQueryBuilder('o')
      .where('o.app_id = :appId AND (o.created_at > :t OR (o.created_at = :t AND o.id > :id))', { appId, t: c.createdAt, id: c.id })
      .orderBy('o.created_at', 'ASC')
      .addOrderBy('o.id', 'ASC')
      .limit(100)
      .getMany();
  }
}
