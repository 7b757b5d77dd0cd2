import { Module } from '@nestjs/common';
import { CsrfGuard, HumanSessionGuard } from './human-session.guard.js';
import { HumanSessionsRepository } from './human-sessions.repository.js';
import { HumanSessionsService } from './human-sessions.service.js';

/**
 * Dashboard sessions and their guard. Import this module (not MeModule) to guard an endpoint with
 * the human's session: `@UseGuards(HumanSessionGuard)` + `@CurrentHuman()` (src/common/auth/human.ts).
 */
@Module({
  providers: [HumanSessionsRepository, HumanSessionsService, HumanSessionGuard, CsrfGuard],
  exports: [HumanSessionsService, HumanSessionGuard, CsrfGuard],
})
export class HumanSessionsModule {}
