import { Global, Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { EventStreamService } from './event-stream.service.js';
import { EventsController } from './events.controller.js';
import { OutboxPublisher } from './outbox-publisher.js';
import { OutboxRepository } from './outbox.repository.js';
import { OutboxService } from './outbox.service.js';
import { PingDispatcher } from './ping-dispatcher.js';
import { WebhookDispatcher } from './webhook-dispatcher.js';
import { WebhookTargets } from './webhook-targets.js';

@Global()
@Module({
  imports: [AppsModule],
  controllers: [EventsController],
  providers: [OutboxRepository, OutboxService, OutboxPublisher, WebhookDispatcher, WebhookTargets, EventStreamService, PingDispatcher],
  // OutboxRepository: the push module's dispatcher claims and finishes its own rows (delivery status 'push').
  exports: [OutboxService, OutboxRepository, WebhookDispatcher],
})
export class EventsModule {}
