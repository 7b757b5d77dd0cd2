import { Injectable, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { HumanPrincipal } from '../../../common/auth/human.js';
import { AuditLog } from '../../../common/audit-log.js';
import { Clock } from '../../../common/clock.js';
import { notFound } from '../../../common/errors/app-error.js';
import { isId } from '../../../common/ids.js';
import { iso, isoOrNull } from '../../../common/time.js';
import { AgentsService } from '../../agents/agents.service.js';
import { AuditService } from '../../audit/audit.service.js';
import { RevocationList } from '../../oauth/revocation-list.js';
import type { StepUpEntity } from '../../step-ups/step-up.entity.js';
import { StepUpsRepository } from '../../step-ups/step-ups.repository.js';
import { TasksService } from '../../tasks/tasks.service.js';
import type { MeAgentDto, MeGrantsDto } from '../dto/dashboard.dto.js';

/** The longest sudo grant (API.md: duration 60..900 s). */
const MAX_GRANT_MS = 900_000;
const GRANT_ENDED = 'grant_ended_by_user';

/** When a sudo grant ends: `duration` after the approval, on whole seconds (the sudo token's `exp`). */
const grantEnd = (s: StepUpEntity) => Math.floor(((s.decidedAt ?? 0) + s.grantDuration * 1000) / 1000) * 1000;

/**
 * Whether an approved sudo step-up still grants anything: not ended by the human, not voided by
 * narrowed boundaries, within its duration, and either handed out or still claimable.
 */
function grantActive(s: StepUpEntity, now: number): boolean {
  if (s.status !== 'approved' || s.grantType !== 'sudo' || s.reason === GRANT_ENDED) return false;
  if (grantEnd(s) <= now) return false;
  if (s.tokenDeliveredAt !== null) return s.tokenJti !== null;
  return s.expiresAt > now;
}

/** The signed-in human's agents, sudo grants and tasks: what they can stop. */
@Injectable()
export class MeAgentsService implements OnModuleInit {
  private revocations!: RevocationList;

  constructor(
    private readonly agents: AgentsService,
    private readonly auditService: AuditService,
    private readonly audit: AuditLog,
    private readonly stepUps: StepUpsRepository,
    private readonly tasks: TasksService,
    private readonly clock: Clock,
    private readonly moduleRef: ModuleRef,
  ) {}

  onModuleInit(): void {
    // The oauth module's revocation list (not exported by it): revoking the sudo token the way
    // POST /oauth/revoke does (revoked_tokens row, token.revoked audit and cascade, every instance told).
    this.revocations = this.moduleRef.get(RevocationList, { strict: false });
  }

  async list(human: HumanPrincipal): Promise<{ agents: MeAgentDto[] }> {
    const agents = await this.agents.list(human.appId, human.userId);
    const lastUsed = await this.auditService.lastAgentActivity(human.appId, agents.map((a) => a.id));
    return {
      agents: agents.map((a) => ({ id: a.id, name: a.name, model: a.model, status: a.status, permissionBoundaries: a.permissionBoundaries, lastUsedAt: isoOrNull(lastUsed.get(a.id) ?? null) })),
    };
  }

  async setStatus(human: HumanPrincipal, id: string, status: 'active' | 'suspended'): Promise<MeAgentDto> {
    await this.ownAgentOrThrow(human, id);
    await this.agents.update(human.appId, id, { status });
    return (await this.list(human)).agents.find((a) => a.id === id)!;
  }

  /** Revoked for good, as the app's DELETE: tokens stop, pending step-ups cancelled, tasks ended. */
  async revoke(human: HumanPrincipal, id: string): Promise<void> {
    await this.ownAgentOrThrow(human, id);
    await this.agents.revoke(human.appId, id, 'deleted_by_user');
  }

  async grants(human: HumanPrincipal): Promise<MeGrantsDto> {
    const now = this.clock.now();
    const sudo = (await this.stepUps.approvedSudoOfUser(human.appId, human.userId, now - MAX_GRANT_MS - 1000)).filter((s) => grantActive(s, now));
    const tasks = await this.tasks.activeOfUser(human.appId, human.userId);
    return {
      sudo: sudo.map((s) => ({ stepUpId: s.id, agentId: s.agentId, scopes: s.grantScopes, expiresAt: iso(grantEnd(s)) })),
      tasks: tasks.map((t) => ({ id: t.id, taskId: t.taskRef, agentId: t.agentId, scopes: t.scopes, expiresAt: iso(t.expiresAt) })),
    };
  }

  /**
   * Ends a sudo grant now: its token is revoked (401 at agent endpoints, `active: false` on
   * introspection, on every instance) and a token not yet handed out never will be.
   */
  async endGrant(human: HumanPrincipal, stepUpId: string): Promise<void> {
    const s = isId('stepUp', stepUpId) ? await this.stepUps.find(human.appId, stepUpId) : null;
    if (!s || s.userId !== human.userId || !grantActive(s, this.clock.now())) throw notFound('grant');
    // The handed-out token first (idempotent), so a failure below leaves nothing usable; then the grant.
    if (s.tokenJti) await this.revokeToken(s, s.tokenJti);
    const ended = await this.stepUps.ds.transaction(async (m) => {
      if (!(await this.stepUps.endSudoGrant(m, s, GRANT_ENDED, this.clock.now()))) return false;
      await this.audit.record(m, {
        appId: s.appId, type: 'sudo.revoked', outcome: 'success', userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId,
        action: s.action, resource: s.id, details: { scopes: s.grantScopes },
      });
      return true;
    });
    if (!ended) throw notFound('grant');
    // A hand-out that raced with this (its conditional write won) is revoked too.
    const fresh = await this.stepUps.find(s.appId, s.id);
    if (fresh?.tokenJti && fresh.tokenJti !== s.tokenJti) await this.revokeToken(fresh, fresh.tokenJti);
  }

  endTask(human: HumanPrincipal, id: string): Promise<void> {
    return this.tasks.endForUser(human.appId, human.userId, id);
  }

  private revokeToken(s: StepUpEntity, jti: string): Promise<void> {
    return this.revocations.revoke({ jti, appId: s.appId, agentId: s.agentId, userId: s.userId, expiresAt: s.tokenExpiresAt ?? grantEnd(s) });
  }

  private async ownAgentOrThrow(human: HumanPrincipal, id: string): Promise<void> {
    const agent = await this.agents.findOrThrow(human.appId, id);
    if (agent.userId !== human.userId) throw notFound('agent');
  }
}
