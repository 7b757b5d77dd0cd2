import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module.js';
import { AppsModule } from '../apps/apps.module.js';
import { HumanSessionsModule } from '../me/session/human-sessions.module.js';
import { PushWebController } from '../../web/push/push-web.controller.js';
import { PushDispatcher } from './push-dispatcher.js';
import { PushSubscriptionsRepository } from './push-subscriptions.repository.js';
import { PushController, PushSubscriptionsController } from './push.controller.js';
import { PushService } from './push.service.js';

/**
 * Web Push (RFC 8030 / 8291 / 8292, `web-push`): the humans' subscriptions, the fan-out of
 * `step_up.created` into the outbox, and its delivery; the service worker and client script of
 * the dashboard (src/web/push/).
 */
@Module({
  imports: [AppsModule, AgentsModule, HumanSessionsModule],
  controllers: [PushController, PushSubscriptionsController, PushWebController],
  providers: [PushSubscriptionsRepository, PushService, PushDispatcher],
  exports: [PushService],
})
export class PushModule {}
