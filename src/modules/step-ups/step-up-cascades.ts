import { Injectable, type OnModuleInit } from '@nestjs/common';
import { Cascades } from '../../common/cascade.js';
import { withinBoundaries } from '../../common/scopes.js';
import { StepUpDecisions } from './step-up-decisions.js';
import { StepUpsRepository } from './step-ups.repository.js';

/**
 * An agent revoked (by its app, its human, or its user's deletion): its pending step-ups can no
 * longer be approved. Its boundaries narrowed: step-ups beyond them are cancelled, or never handed out.
 */
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
    // Narrowed boundaries: what lies outside them is never approved nor handed out, even if they widen again.
    this.cascades.on('agent.boundaries_changed', async (m, e, scope) => {
      const outside = (s: { action: string; grantScopes: string[] }) => [s.action, ...s.grantScopes].some((x) => !withinBoundaries(e.boundaries, x));
      for (const s of await this.repo.pendingOf(m, { appId: e.appId, agentId: e.agentId })) {
        if (outside(s) && (await this.decisions.decideIn(m, s, 'cancelled', { reason: 'boundaries_narrowed' }))) scope.afterCommit(() => this.decisions.changed(s.id));
      }
      for (const s of await this.repo.approvedUncollected(m, e.appId, e.agentId)) if (outside(s)) await this.repo.voidHandOut(m, s, e.now);
    });
  }
}
