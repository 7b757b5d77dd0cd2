import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { calculateJwkThumbprint, importJWK, type JWK } from 'jose';
import type { EntityManager } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { callerAppId, type AgentPrincipal, type Caller } from '../../common/auth/principals.js';
import { Clock } from '../../common/clock.js';
import { iso } from '../../common/time.js';
import { Cascades, CascadeScope } from '../../common/cascade.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { randomToken } from '../../common/crypto/tokens.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId, newId } from '../../common/ids.js';
import { RequestContext } from '../../common/request-context.js';
import { withinBoundaries } from '../../common/scopes.js';
import { isUniqueViolation } from '../../database/errors.js';
import { AgentsRepository } from '../agents/agents.repository.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import { AuditLog } from '../../common/audit-log.js';
import { OutboxService } from '../events/outbox.service.js';
import { webhookUrlProblem } from '../../common/net/ssrf.js';
import { AgentTokensService } from '../oauth/agent-tokens.service.js';
import { UsersService } from '../users/users.service.js';
import type { CreateConnectionDto, CreateTaskDto, TaskDto } from './dto/task.dto.js';
import { ConnectionEntity, TaskEntity } from './task.entity.js';
import { TaskStatus } from './task-status.js';
import { TasksRepository } from './tasks.repository.js';
import { VaultService, type UpstreamToken } from './vault.service.js';
import { WorkerProof } from './worker-proof.js';

export const WORKER_TOKEN_TTL_S = 300;
/** The scope that grants a task's worker one connection's upstream token (API.md v1.1). */
export const connectionScope = (name: string) => `connection:${name}`;

@Injectable()
export class TasksService implements OnModuleInit {
  constructor(
    private readonly repo: TasksRepository,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
    private readonly cascades: Cascades,
    private readonly audit: AuditLog,
    private readonly outbox: OutboxService,
    private readonly agentTokens: AgentTokensService,
    private readonly agents: AgentsRepository,
    private readonly users: UsersService,
    private readonly taskStatus: TaskStatus,
    private readonly proof: WorkerProof,
    private readonly vault: VaultService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    // A revoked agent's tasks end with it; a deleted user's deposited credentials go with the user.
    this.cascades.on('agent.revoked', async (m, e, scope) => {
      const reason = e.reason === 'user_deleted' ? 'user_deleted' : 'agent_revoked';
      for (const task of await this.repo.activeOfAgent(m, e.appId, e.agentId)) await this.endIn(m, scope, task, reason, e.now);
    });
    this.cascades.on('user.deleted', (m, e) => this.repo.deleteUserConnections(m, e.appId, e.userId));
    this.cascades.on('token.revoked', async (m, e, scope) => {
      for (const task of await this.repo.activeCreatedBy(m, e.appId, e.agentId, e.jti)) await this.endIn(m, scope, task, 'creator_token_revoked', e.now);
    });
  }

  async create(agent: AgentPrincipal, dto: CreateTaskDto): Promise<TaskDto> {
    // A task never outlives or outgrows the authority that created it (API.md v1.1): a worker
    // token cannot start tasks, and the task's scopes lie within the calling token's scope.
    if (agent.workerTaskId !== null) throw new AppError('action_not_permitted', 'a worker token cannot create tasks');
    const outside = dto.scopes.find((s) => !withinBoundaries(agent.scopes, s));
    if (outside) throw new AppError('action_not_permitted', "a task scope is not covered by the calling token's scope");
    const jwk = await this.workerKeyOrThrow(dto.workerJwk);
    const now = this.clock.now();
    // A task started with a sudo token ends when the human's grant does.
    const grantEnd = agent.stepUpId !== null ? agent.exp * 1000 : Number.POSITIVE_INFINITY;
    const id = newId('task');
    const task = Object.assign(new TaskEntity(), {
      id, appId: agent.appId, agentId: agent.agentId, userId: agent.userId, taskRef: dto.taskId, description: dto.description ?? null,
      scopes: [...new Set(dto.scopes)], workerJkt: await calculateJwkThumbprint(jwk), workerJwk: jwk,
      // The task's long-lived grant: held encrypted in the vault, never returned.
      credentialEnc: this.cipher.encrypt(randomToken('mpx_tsk_'), { table: 'tasks', column: 'credential_enc', id }),
      status: 'active', endReason: null, createdAt: now, expiresAt: Math.min(now + (dto.maxDuration ?? 28_800) * 1000, grantEnd), endedAt: null,
      creatorJti: agent.jti,
    });
    await this.repo.ds.transaction(async (m) => {
      await this.repo.insert(m, task);
      await this.audit.record(m, { appId: task.appId, type: 'task.created', outcome: 'success', agentId: task.agentId, userId: task.userId, taskId: task.taskRef, resource: task.id, action: 'task' });
    });
    return this.toDto(task);
  }

  async get(caller: Caller, id: string): Promise<TaskDto> {
    return this.toDto(await this.findOrThrow(caller, id));
  }

  async end(caller: Caller, id: string): Promise<void> {
    const task = await this.findOrThrow(caller, id);
    if (!(await this.endTask(task, caller.kind === 'agent' ? 'ended_by_agent' : 'revoked_by_app'))) throw new AppError('task_ended', 'the task has already ended');
  }

  /** An ephemeral, DPoP-bound agent token for the worker holding the task's key. */
  async workerToken(req: FastifyRequest, id: string) {
    const task = await this.activeTaskForWorkerOrThrow(req, id);
    const agent = await this.agents.findById(task.agentId);
    const boundaries = agent?.permissionBoundaries ?? [];
    const scopes = task.scopes.filter((s) => withinBoundaries(boundaries, s));
    const ttl = Math.min(WORKER_TOKEN_TTL_S, Math.floor((task.expiresAt - this.clock.now()) / 1000));
    const issued = await this.agentTokens.issue({
      agent: agent as AgentEntity,
      scopes,
      ttlSeconds: ttl,
      taskId: task.taskRef,
      jkt: task.workerJkt,
      extra: { tsk: task.id },
    });
    await this.audit.record(this.repo.ds.manager, { appId: task.appId, type: 'task.token_issued', outcome: 'success', taskId: task.taskRef, resource: task.id, action: 'task' });
    return { access_token: issued.token, token_type: 'DPoP' as const, expires_in: issued.expiresIn, scope: scopes.join(' ') };
  }

  /** The user's upstream access token for the worker: the refresh token never leaves the vault. */
  async upstreamToken(req: FastifyRequest, id: string, connectionId: string): Promise<UpstreamToken> {
    const task = await this.activeTaskForWorkerOrThrow(req, id);
    const connection = isId('connection', connectionId) ? await this.repo.findConnection(task.appId, connectionId) : null;
    const uc = connection ? await this.repo.findUserConnection(task.appId, task.userId, connection.id) : null;
    if (!connection || !uc) throw notFound('connection');
    // A connection is reached through its scope only: in the task's scopes, and so (still) in the agent's boundaries.
    const scope = connectionScope(connection.name);
    const agent = await this.agents.findById(task.agentId);
    if (!task.scopes.includes(scope) || !withinBoundaries(agent?.permissionBoundaries ?? [], scope)) {
      throw new AppError('action_not_permitted', "this task's scopes do not include this connection's scope (connection:<name>)");
    }
    return this.vault.accessToken(uc, connection, task.taskRef);
  }

  async createConnection(appId: string, dto: CreateConnectionDto): Promise<{ id: string; name: string }> {
    const problem = webhookUrlProblem(dto.tokenEndpoint, this.config.webhookAllowPrivate);
    if (problem) throw new AppError('validation_failed', problem.replace('webhookUrl', 'tokenEndpoint'));
    const id = newId('connection');
    const connection = Object.assign(new ConnectionEntity(), {
      id, appId, name: dto.name, tokenEndpoint: dto.tokenEndpoint, clientId: dto.clientId,
      clientSecretEnc: this.cipher.encrypt(dto.clientSecret, { table: 'connections', column: 'client_secret_enc', id }),
      scopes: dto.scopes ?? [], createdAt: this.clock.now(),
    });
    try {
      await this.repo.ds.transaction(async (m) => {
        await this.repo.insertConnection(m, connection);
        await this.audit.record(m, { appId, type: 'connection.created', outcome: 'success', action: dto.name, resource: id });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'a connection with this name exists in this app');
      throw err;
    }
    return { id, name: dto.name };
  }

  /** Deposits (or replaces) the user's refresh token for a connection. */
  async deposit(appId: string, userId: string, connectionId: string, refreshToken: string): Promise<void> {
    const user = await this.users.findOrThrow(appId, userId);
    const connection = isId('connection', connectionId) ? await this.repo.findConnection(appId, connectionId) : null;
    if (!connection) throw notFound('connection');
    const existing = await this.repo.findUserConnection(appId, user.id, connectionId);
    const id = existing?.id ?? newId('userConnection');
    const row = {
      id, appId, userId: user.id, connectionId,
      refreshTokenEnc: this.cipher.encrypt(refreshToken, { table: 'user_connections', column: 'refresh_token_enc', id }),
      accessTokenEnc: null, accessTokenExpiresAt: null, scope: null, status: 'active' as const, updatedAt: this.clock.now(),
    };
    try {
      await this.repo.ds.transaction(async (m) => {
        await this.repo.saveUserConnection(m, existing !== null, row);
        await this.audit.record(m, { appId, type: 'connection.deposited', outcome: 'success', userId: user.id, action: connection.name, resource: connection.id });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'a refresh token is being deposited concurrently; retry');
      throw err;
    }
  }

  private async activeTaskForWorkerOrThrow(req: FastifyRequest, id: string): Promise<TaskEntity> {
    const task = isId('task', id) ? await this.repo.findById(id) : null;
    if (!task) throw notFound('task');
    await this.proof.verifyOrThrow(req, task.workerJkt);
    RequestContext.assign({ appId: task.appId, actorType: 'agent', actorId: task.agentId, agentId: task.agentId, userId: task.userId, taskId: task.taskRef });
    if (task.status !== 'active' || task.expiresAt <= this.clock.now()) throw new AppError('task_ended', 'the task has ended');
    // Revoking the agent or deleting the user ends the task too.
    if (!(await this.agentTokens.isActive(task.agentId, task.userId))) {
      await this.endTask(task, 'agent_or_user_revoked');
      throw new AppError('task_ended', 'the task has ended');
    }
    return task;
  }

  /** The signed-in human's active tasks (dashboard). */
  activeOfUser(appId: string, userId: string): Promise<TaskEntity[]> {
    return this.repo.activeOfUser(appId, userId, this.clock.now());
  }

  /** The signed-in human ends one of their tasks: as the app's DELETE (no more tokens). Another user's: 404. */
  async endForUser(appId: string, userId: string, id: string): Promise<void> {
    const task = isId('task', id) ? await this.repo.find(appId, id) : null;
    if (!task || task.userId !== userId) throw notFound('task');
    if (!(await this.endTask(task, 'ended_by_user'))) throw new AppError('task_ended', 'the task has already ended');
  }

  private async endTask(task: TaskEntity, reason: string): Promise<boolean> {
    const scope = new CascadeScope();
    const ended = await this.repo.ds.transaction((m) => this.endIn(m, scope, task, reason, this.clock.now()));
    await scope.committed();
    return ended;
  }

  /** active → ended with its audit and outbox events, in the caller's transaction; its tokens stop after commit. */
  private async endIn(m: EntityManager, scope: CascadeScope, task: TaskEntity, reason: string, now: number): Promise<boolean> {
    if (!(await this.repo.end(m, task, reason, now))) return false;
    await this.audit.record(m, { appId: task.appId, type: 'task.ended', outcome: 'success', agentId: task.agentId, userId: task.userId, taskId: task.taskRef, resource: task.id, action: 'task' });
    await this.outbox.add(m, task.appId, 'task.ended', { taskId: task.id, agentTaskId: task.taskRef, agentId: task.agentId, userId: task.userId, reason });
    scope.afterCommit(() => this.taskStatus.ended(task.id));
    return true;
  }

  private async findOrThrow(caller: Caller, id: string): Promise<TaskEntity> {
    const appId = callerAppId(caller);
    const task = isId('task', id) ? await this.repo.find(appId, id) : null;
    // An agent sees its own tasks; a worker token only its own task.
    const foreign = caller.kind === 'agent' && (task?.agentId !== caller.agent.agentId || (caller.agent.workerTaskId !== null && caller.agent.workerTaskId !== task?.id));
    if (!task || foreign) throw notFound('task');
    return task;
  }

  /** EC P-256 or Ed25519, public only (RFC 7517 §4; a private member is refused, not stripped). */
  private async workerKeyOrThrow(raw: Record<string, unknown>): Promise<JWK> {
    const jwk = raw as JWK;
    if ('d' in jwk) throw new AppError('validation_failed', 'workerJwk is a private key: send the public key only');
    const ec = jwk.kty === 'EC' && jwk.crv === 'P-256' && typeof jwk.x === 'string' && typeof jwk.y === 'string';
    const ed = jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && typeof jwk.x === 'string';
    if (!ec && !ed) throw new AppError('validation_failed', 'workerJwk must be an EC P-256 or Ed25519 public key');
    try {
      await importJWK(jwk, ec ? 'ES256' : 'EdDSA');
    } catch {
      throw new AppError('validation_failed', 'workerJwk is not a valid public key');
    }
    return ec ? { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y } : { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
  }

  private toDto(t: TaskEntity): TaskDto {
    const expired = t.status === 'active' && t.expiresAt <= this.clock.now();
    return { id: t.id, taskId: t.taskRef, status: expired ? 'ended' : t.status, scopes: t.scopes, expiresAt: iso(t.expiresAt), ...(t.endReason ? { endReason: t.endReason } : expired ? { endReason: 'expired' } : {}) };
  }
}
