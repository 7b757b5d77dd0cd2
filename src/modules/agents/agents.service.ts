import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { JSONWebKeySet } from 'jose';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { hashSecret, randomToken, TOKEN_PREFIX } from '../../common/crypto/tokens.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId, newId } from '../../common/ids.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { AGENT_CHANGED } from '../../common/cache/channels.js';
import { Cascades, CascadeScope, type CascadeEvent } from '../../common/cascade.js';
import { iso } from '../../common/time.js';
import { webhookUrlProblem } from '../../common/net/ssrf.js';
import { AuditLog } from '../../common/audit-log.js';
import { OutboxService } from '../events/outbox.service.js';
import { UsersService } from '../users/users.service.js';
import { validateAgentJwksOrThrow } from './agent-jwks.js';
import { AgentEntity } from './agent.entity.js';
import { AgentsRepository } from './agents.repository.js';
import type { AgentDto, AgentSecretDto, CreateAgentDto, CreatedAgentDto, UpdateAgentDto } from './dto/agent.dto.js';

/** Algorithms an agent may sign its client assertions with (asymmetric only). */
export { CLIENT_ASSERTION_ALGS } from './agent-jwks.js';

type RevokeReason = Extract<CascadeEvent, { type: 'agent.revoked' }>['reason'];

@Injectable()
export class AgentsService implements OnModuleInit {
  constructor(
    private readonly repo: AgentsRepository,
    private readonly users: UsersService,
    private readonly clock: Clock,
    private readonly pubsub: PubSub,
    private readonly audit: AuditLog,
    private readonly outbox: OutboxService,
    private readonly cascades: Cascades,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    // A deleted user's agents are revoked with it, each with its own events and cascade.
    this.cascades.on('user.deleted', async (m, e, scope) => {
      for (const agent of await this.repo.liveOfUser(m, e.appId, e.userId)) await this.revokeIn(m, scope, agent, 'user_deleted', e.now);
    });
  }

  async create(appId: string, dto: CreateAgentDto): Promise<CreatedAgentDto> {
    const user = await this.users.findOrThrow(appId, dto.userId);
    const jwks = dto.jwks ? await validateAgentJwksOrThrow(dto.jwks as JSONWebKeySet) : null;
    const clientSecret = jwks ? undefined : randomToken(TOKEN_PREFIX.agentSecret);
    this.checkNotificationEndpoint(dto.cibaNotificationEndpoint);
    const now = this.clock.now();
    const agent = Object.assign(new AgentEntity(), {
      id: newId('agent'),
      appId,
      userId: user.id,
      name: dto.name,
      model: dto.model,
      permissionBoundaries: [...new Set(dto.permissionBoundaries)],
      tokenTtl: dto.tokenTtl ?? this.config.agentTokenTtlDefault,
      rateLimitPerMinute: dto.rateLimitPerMinute ?? this.config.agentRateLimitDefault,
      secretHash: clientSecret ? hashSecret(clientSecret) : null,
      jwks,
      status: 'active',
      createdAt: now,
      updatedAt: now,
      revokedAt: null,
      cibaNotificationEndpoint: dto.cibaNotificationEndpoint ?? null,
    });
    await this.repo.ds.transaction(async (m) => {
      await this.repo.insert(m, agent);
      await this.audit.record(m, { appId, type: 'agent.created', outcome: 'success', agentId: agent.id, userId: agent.userId, model: agent.model });
    });
    return { ...this.toDto(agent), ...(clientSecret ? { clientSecret } : {}) };
  }

  async list(appId: string, userId?: string): Promise<AgentDto[]> {
    if (userId !== undefined && !isId('user', userId)) return [];
    return (await this.repo.list(appId, userId)).map((a) => this.toDto(a));
  }

  async get(appId: string, id: string): Promise<AgentDto> {
    return this.toDto(await this.findOrThrow(appId, id));
  }

  async update(appId: string, id: string, dto: UpdateAgentDto): Promise<AgentDto> {
    const before = await this.findOrThrow(appId, id);
    const patch: Partial<AgentEntity> = { updatedAt: this.clock.now() };
    if (dto.name !== undefined) patch.name = dto.name;
    if (dto.permissionBoundaries !== undefined) patch.permissionBoundaries = [...new Set(dto.permissionBoundaries)];
    if (dto.status !== undefined) patch.status = dto.status;
    if (dto.cibaNotificationEndpoint !== undefined) {
      this.checkNotificationEndpoint(dto.cibaNotificationEndpoint ?? undefined);
      patch.cibaNotificationEndpoint = dto.cibaNotificationEndpoint;
    }
    const scope = new CascadeScope();
    const updated = await this.repo.ds.transaction(async (m) => {
      if (!(await this.repo.updateLive(appId, id, patch, m))) return false;
      const target = { appId, agentId: id, userId: before.userId, model: before.model };
      if (patch.permissionBoundaries !== undefined) {
        // Requests approved or pending under the old boundaries stop where the new ones end.
        await this.cascades.emit(m, scope, { type: 'agent.boundaries_changed', appId, agentId: id, boundaries: patch.permissionBoundaries, now: patch.updatedAt! });
      }
      if (patch.name !== undefined || patch.permissionBoundaries !== undefined) {
        const changed = (['name', 'permissionBoundaries'] as const).filter((k) => patch[k] !== undefined);
        await this.audit.record(m, {
          ...target, type: 'agent.updated', outcome: 'success',
          details: { before: Object.fromEntries(changed.map((k) => [k, before[k]])), after: Object.fromEntries(changed.map((k) => [k, patch[k]])) },
        });
      }
      if (patch.status !== undefined && patch.status !== before.status) {
        await this.audit.record(m, { ...target, type: patch.status === 'suspended' ? 'agent.suspended' : 'agent.resumed', outcome: 'success' });
      }
      return true;
    });
    if (!updated) throw notFound('agent');
    await scope.committed();
    // Suspension (and narrowed boundaries) take effect on the next request of every instance.
    await this.pubsub.publish(AGENT_CHANGED, { agentId: id });
    return this.get(appId, id);
  }

  async rotateSecret(appId: string, id: string): Promise<AgentSecretDto> {
    const agent = await this.findOrThrow(appId, id);
    if (agent.jwks) throw new AppError('conflict', 'this agent authenticates with private_key_jwt; it has no client secret');
    const clientSecret = randomToken(TOKEN_PREFIX.agentSecret);
    const rotated = await this.repo.ds.transaction(async (m) => {
      if (!(await this.repo.updateLive(appId, id, { secretHash: hashSecret(clientSecret), updatedAt: this.clock.now() }, m))) return false;
      await this.audit.record(m, { appId, type: 'agent.secret_rotated', outcome: 'success', agentId: id, userId: agent.userId, model: agent.model });
      return true;
    });
    if (!rotated) throw notFound('agent');
    // The old secret stops working at once on every instance (client authentication caches the agent).
    await this.pubsub.publish(AGENT_CHANGED, { agentId: id });
    return { clientSecret };
  }

  /** Revokes the agent for good; in the same transaction its step-ups are cancelled and its tasks ended (`agent.revoked`). */
  async revoke(appId: string, id: string, reason: RevokeReason = 'deleted_by_app'): Promise<void> {
    const agent = await this.findOrThrow(appId, id);
    const scope = new CascadeScope();
    const revoked = await this.repo.ds.transaction((m) => this.revokeIn(m, scope, agent, reason, this.clock.now()));
    if (!revoked) throw notFound('agent');
    await scope.committed();
  }

  private async revokeIn(m: EntityManager, scope: CascadeScope, agent: AgentEntity, reason: RevokeReason, now: number): Promise<boolean> {
    if (!(await this.repo.revokeIn(m, agent.appId, agent.id, now))) return false;
    await this.audit.record(m, { appId: agent.appId, type: 'agent.revoked', outcome: 'success', agentId: agent.id, userId: agent.userId, model: agent.model });
    await this.outbox.add(m, agent.appId, 'agent.revoked', { agentId: agent.id, userId: agent.userId, reason });
    await this.cascades.emit(m, scope, { type: 'agent.revoked', appId: agent.appId, agentId: agent.id, userId: agent.userId, model: agent.model, reason, now });
    scope.afterCommit(() => this.pubsub.publish(AGENT_CHANGED, { agentId: agent.id }));
    return true;
  }

  async findOrThrow(appId: string, id: string): Promise<AgentEntity> {
    const agent = isId('agent', id) ? await this.repo.findLive(appId, id) : null;
    if (!agent) throw notFound('agent');
    return agent;
  }

  toDto(agent: AgentEntity): AgentDto {
    return {
      id: agent.id,
      userId: agent.userId,
      name: agent.name,
      model: agent.model,
      permissionBoundaries: agent.permissionBoundaries,
      status: agent.status,
      tokenTtl: agent.tokenTtl,
      rateLimitPerMinute: agent.rateLimitPerMinute,
      authMethod: agent.jwks ? 'private_key_jwt' : 'client_secret',
      cibaNotificationEndpoint: agent.cibaNotificationEndpoint ?? null,
      createdAt: iso(agent.createdAt),
    };
  }

  /**
   * CIBA ping endpoint (API.md v1.1): https, or a loopback http URL when WEBHOOK_ALLOW_PRIVATE;
   * never a literal private or loopback address otherwise (the webhooks' SSRF rules, which
   * delivery checks again against what the name resolves to).
   */
  private checkNotificationEndpoint(url: string | undefined): void {
    if (url === undefined) return;
    const problem = webhookUrlProblem(url, this.config.webhookAllowPrivate)?.replace('webhookUrl', 'cibaNotificationEndpoint');
    if (problem) throw new AppError('validation_failed', problem);
    const { protocol, hostname } = new URL(url);
    const loopback = hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
    if (protocol !== 'https:' && !(this.config.webhookAllowPrivate && loopback)) throw new AppError('validation_failed', 'cibaNotificationEndpoint must be https (http only to loopback when WEBHOOK_ALLOW_PRIVATE)');
  }
}
