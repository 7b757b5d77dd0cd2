import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import type { AgentPrincipal } from '../../common/auth/principals.js';
import { Clock } from '../../common/clock.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { AppError } from '../../common/errors/app-error.js';
import { AgentsRepository } from '../agents/agents.repository.js';
import { AuditLog } from '../../common/audit-log.js';
import { OutboxService } from '../events/outbox.service.js';
import { AGENT_CHANGED } from '../../common/cache/channels.js';
import type { StepUpEntity } from './step-up.entity.js';
import { StepUpsRepository } from './step-ups.repository.js';

const DAY_MS = 24 * 3600_000;

/**
 * Anti push-fatigue: an agent its human keeps refusing is cooled down (no new step-ups for a
 * while, and the app is told), and past a higher threshold suspended outright.
 */
@Injectable()
export class FatigueService {
  constructor(
    private readonly repo: StepUpsRepository,
    private readonly audit: AuditLog,
    private readonly outbox: OutboxService,
    private readonly pubsub: PubSub,
    private readonly agents: AgentsRepository,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** 429 agent_cooldown while the agent is cooling down after K denials within the window. */
  async assertNotCoolingDown(agent: Pick<AgentPrincipal, 'appId' | 'agentId'>): Promise<void> {
    const { cooldownAfterDenials: k, windowSeconds, cooldownSeconds } = this.config.fatigue;
    const now = this.clock.now();
    const denials = await this.repo.humanDenials(agent.appId, agent.agentId, now - windowSeconds * 1000 - cooldownSeconds * 1000);
    // Cooling down from the K-th denial of any window of K denials that ends within the cooldown.
    for (let i = 0; i + k - 1 < denials.length; i++) {
      const newest = denials[i];
      const oldest = denials[i + k - 1];
      if (newest - oldest <= windowSeconds * 1000 && newest + cooldownSeconds * 1000 > now) {
        const retry = Math.ceil((newest + cooldownSeconds * 1000 - now) / 1000);
        throw new AppError('agent_cooldown', `the user denied this agent ${k} times recently; try again in ${retry} s`, { headers: { 'Retry-After': String(retry) } });
      }
    }
  }

  /** After a human denial: tell the app when the agent enters cooldown; suspend it past the daily threshold. */
  async afterDenial(s: StepUpEntity): Promise<void> {
    const { cooldownAfterDenials: k, windowSeconds, autoSuspendAfterDenials } = this.config.fatigue;
    const now = this.clock.now();
    const inWindow = (await this.repo.humanDenials(s.appId, s.agentId, now - windowSeconds * 1000)).length;
    const inDay = (await this.repo.humanDenials(s.appId, s.agentId, now - DAY_MS)).length;
    const suspend = inDay >= autoSuspendAfterDenials;
    if (inWindow !== k && !suspend) return;
    const suspended = await this.repo.ds.transaction(async (m) => {
      if (inWindow === k) {
        await this.audit.record(m, { appId: s.appId, type: 'agent.cooldown', outcome: 'denied', userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId });
        await this.outbox.add(m, s.appId, 'agent.cooldown', { agentId: s.agentId, userId: s.userId, denials: inWindow, cooldownSeconds: this.config.fatigue.cooldownSeconds });
      }
      if (!suspend) return false;
      if (!(await this.agents.suspendIn(m, s.appId, s.agentId, now))) return false;
      await this.audit.record(m, { appId: s.appId, type: 'agent.suspended', outcome: 'denied', userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId });
      await this.outbox.add(m, s.appId, 'agent.suspended', { agentId: s.agentId, userId: s.userId, reason: 'too_many_denials', denials: inDay });
      return true;
    });
    if (suspended) await this.pubsub.publish(AGENT_CHANGED, { agentId: s.agentId });
  }
}
