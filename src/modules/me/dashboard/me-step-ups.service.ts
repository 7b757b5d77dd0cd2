import { Injectable } from '@nestjs/common';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { HumanPrincipal } from '../../../common/auth/human.js';
import { Clock } from '../../../common/clock.js';
import { RequestContext } from '../../../common/request-context.js';
import { iso } from '../../../common/time.js';
import { ApprovalsService } from '../../approvals/approvals.service.js';
import type { StepUpEntity } from '../../step-ups/step-up.entity.js';
import { StepUpDecisions } from '../../step-ups/step-up-decisions.js';
import { StepUpsRepository } from '../../step-ups/step-ups.repository.js';
import type { MeStepUpDto } from '../dto/dashboard.dto.js';
import { HumanSessionsService } from '../session/human-sessions.service.js';

const LIST_LIMIT = 50;
type Decided = { status: 'approved' | 'denied' };

/**
 * The signed-in human's step-ups: listed with everything the approval page shows, and decided
 * inline through the approvals service's own methods (same rules, limits, errors and events).
 */
@Injectable()
export class MeStepUpsService {
  constructor(
    private readonly approvals: ApprovalsService,
    private readonly stepUps: StepUpsRepository,
    private readonly decisions: StepUpDecisions,
    private readonly sessions: HumanSessionsService,
    private readonly clock: Clock,
  ) {}

  async list(human: HumanPrincipal, status: 'pending' | 'all' = 'pending'): Promise<{ stepUps: MeStepUpDto[] }> {
    const rows = await this.stepUps.ofUser(human.appId, human.userId, status === 'pending', LIST_LIMIT);
    const now = this.clock.now();
    const fresh: StepUpEntity[] = [];
    for (const s of rows) fresh.push(s.status === 'pending' && s.expiresAt <= now ? await this.decisions.expireIfDue(s) : s);
    const shown = status === 'pending' ? fresh.filter((s) => s.status === 'pending') : fresh;
    return { stepUps: await Promise.all(shown.map(async (s) => ({ ...(await this.approvals.view(s)), ...(s.decidedAt !== null ? { decidedAt: iso(s.decidedAt) } : {}) }))) };
  }

  async webauthnOptions(human: HumanPrincipal, id: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return this.approvals.webauthnOptionsFor(await this.resolve(human, id));
  }

  async webauthnVerify(human: HumanPrincipal, id: string, response: Record<string, unknown>): Promise<Decided> {
    const decided = await this.approvals.webauthnVerifyFor(await this.resolve(human, id), response);
    // A factor proof: it re-opens this session's window for factor changes.
    await this.sessions.markFactorProof(human);
    return decided;
  }

  async totp(human: HumanPrincipal, id: string, code: string): Promise<Decided> {
    const decided = await this.approvals.totpApproveFor(await this.resolve(human, id), code);
    await this.sessions.markFactorProof(human);
    return decided;
  }

  async deny(human: HumanPrincipal, id: string, reason?: string): Promise<Decided> {
    return this.approvals.denyFor(await this.resolve(human, id), reason);
  }

  /** This user's step-up (another user's or app's: 404), with the request's audit context completed. */
  private async resolve(human: HumanPrincipal, id: string): Promise<StepUpEntity> {
    const s = await this.approvals.resolveForUser(human.appId, human.userId, id);
    RequestContext.assign({ agentId: s.agentId, model: s.model, taskId: s.taskId });
    return s;
  }
}
