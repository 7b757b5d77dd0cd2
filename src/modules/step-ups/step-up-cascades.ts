import { Injectable, type OnModuleInit } from '@nestjs/common';
import { Cascades } from '../../common/cascade.js';
import { StepUpDecisions } from './step-up-decisions.js';
import { StepUpsRepository } from './step-ups.repository.js';

/** An agent revoked (by its app, its human, or its user's deletion): its pending step-ups can no longer be approved. */
@Injectable()
export class StepUpCascades implements OnModuleInit {
  constructor(
    private readonly repo: StepUpsRepository,
    private readonly decisions: StepUpDecisions,
    private readonly cascades: Cascades,
  ) {}

  onModuleInit(): void {
    this.cascades.on('agent.revoked', async (m, e, scope) => {
      const reason = e.reason === 'user_deleted' ? 'user_deleted' : 'agent_revoked';
      for (const s of await this.repo.pendingOf(m, { appId: e.appId, agentId: e.agentId })) {
        // The same conditional write, audit and outbox event as any cancellation; long-polls wake after commit.
        if (await this.decisions.decideIn(m, s, 'cancelled', { reason })) scope.afterCommit(() => this.decisions.changed(s.id));
      }
    });
  }
}
