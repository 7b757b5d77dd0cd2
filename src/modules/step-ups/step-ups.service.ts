import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomInt } from 'node:crypto';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import type { AgentPrincipal } from '../../common/auth/principals.js';
import { Clock } from '../../common/clock.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { hashSecret, randomToken, sha256, TOKEN_PREFIX } from '../../common/crypto/tokens.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId, newId } from '../../common/ids.js';
import { withinBoundaries } from '../../common/scopes.js';
import { isUniqueViolation } from '../../database/errors.js';
import { AuditService } from '../audit/audit.service.js';
import { OutboxService } from '../events/outbox.service.js';
import type { FactorType } from '../factors/factor.entity.js';
import { FactorsRepository } from '../factors/factors.repository.js';
import { MfaProxyTokensService } from '../mfa-proxy-tokens/mfa-proxy-tokens.service.js';
import { AgentTokensService } from '../oauth/agent-tokens.service.js';
import { stepUpCreateKey, userPushesKey } from '../rate-limit/buckets.js';
import { RateLimitService } from '../rate-limit/rate-limit.service.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import type { CreatedStepUpDto, CreateStepUpDto, StepUpDto } from './dto/step-up.dto.js';
import { FatigueService } from './fatigue.service.js';
import { StepUpDecisions, eventData } from './step-up-decisions.js';
import { StepUpEntity } from './step-up.entity.js';
import { StepUpsRepository } from './step-ups.repository.js';
import { canonicalJson, hashDetails } from './transaction.js';

/** Defaults that API.md fixes (tests rely on them). */
export const PENDING_CAP_PER_USER = 5;
export const POLL_INTERVAL_S = 5;
const DETAILS_MAX_BYTES = 8 * 1024;
const IDEMPOTENCY_WINDOW_MS = 24 * 3600_000;
const SWEEP_EVERY_MS = 5_000;
/** No 0/O, 1/I/L: easy to compare by eye. */
const BINDING_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';

const iso = (ms: number) => new Date(ms).toISOString();
const approvalAad = (id: string) => ({ table: 'step_ups', column: 'approval_token_enc', id });

@Injectable()
export class StepUpsService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(StepUpsService.name);
  private sweeper: NodeJS.Timeout | null = null;
  /** Last plain poll per step-up (per instance): polling faster than `interval` gets slow_down. */
  private readonly lastPoll = new Map<string, number>();

  constructor(
    private readonly repo: StepUpsRepository,
    private readonly decisions: StepUpDecisions,
    private readonly factors: FactorsRepository,
    private readonly mfaTokens: MfaProxyTokensService,
    private readonly agentTokens: AgentTokensService,
    private readonly audit: AuditService,
    private readonly outbox: OutboxService,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
    private readonly limits: RateLimitService,
    private readonly fatigue: FatigueService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.sweeper = setInterval(() => void this.sweep().catch((err) => this.logger.warn({ err }, 'expiry sweep failed')), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  onApplicationShutdown(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  /** Background expiry (lazy expiry on read covers the gap between sweeps). */
  async sweep(): Promise<number> {
    let n = 0;
    for (const s of await this.repo.expiredPending(this.clock.now(), 100)) if (await this.decisions.decide(s, 'expired', { reason: 'expired' })) n++;
    return n;
  }

  async create(agent: AgentPrincipal, dto: CreateStepUpDto, idempotencyKey?: string): Promise<{ status: 200 | 201; body: CreatedStepUpDto }> {
    if (idempotencyKey !== undefined && (idempotencyKey.length < 1 || idempotencyKey.length > 255)) throw new AppError('validation_failed', 'Idempotency-Key must be 1..255 characters');
    await this.limits.consume('stepUpCreate', stepUpCreateKey(agent.agentId));
    // The action must lie within the agent's boundaries; nothing is pushed otherwise.
    if (!withinBoundaries(agent.boundaries, dto.action)) throw new AppError('action_not_permitted', `the action "${dto.action}" is outside this agent's permission boundaries`);
    await this.fatigue.assertNotCoolingDown(agent);
    const details = dto.details ?? {};
    if (Buffer.byteLength(canonicalJson(details)) > DETAILS_MAX_BYTES) throw new AppError('validation_failed', 'details must be at most 8 KiB as JSON');
    const grantType = dto.grant?.type ?? 'token';
    const grantScopes = grantType === 'sudo' ? [...new Set(dto.grant?.scopes ?? [])] : [];
    if (grantType === 'sudo') {
      if (grantScopes.length === 0) throw new AppError('validation_failed', 'a sudo grant needs scopes');
      const outside = grantScopes.find((s) => !withinBoundaries(agent.boundaries, s));
      if (outside) throw new AppError('action_not_permitted', `the scope "${outside}" is outside this agent's permission boundaries`);
    } else if (dto.grant?.scopes || dto.grant?.duration) {
      throw new AppError('validation_failed', 'scopes and duration apply to sudo grants only');
    }
    const grantDuration = grantType === 'sudo' ? (dto.grant?.duration ?? 300) : 0;
    const methods: FactorType[] = dto.methods ?? ['webauthn', 'totp'];
    const detailsHash = hashDetails(details);
    // What makes two requests "the same": idempotency and identical-pending dedupe compare this.
    const requestHash = sha256(canonicalJson({ action: dto.action, resource: dto.resource ?? null, detailsHash, grant: { type: grantType, scopes: grantScopes, duration: grantDuration } })).toString('base64url');
    const now = this.clock.now();

    if (idempotencyKey !== undefined) {
      const prior = await this.repo.findByIdempotencyKey(agent.appId, agent.agentId, idempotencyKey);
      if (prior && prior.createdAt > now - IDEMPOTENCY_WINDOW_MS) {
        const sameBody = prior.requestHash === requestHash && canonicalJson({ m: prior.methods, b: prior.bindingMessage }) === canonicalJson({ m: methods, b: dto.bindingMessage ?? null });
        if (!sameBody) throw new AppError('idempotency_key_reuse', 'this Idempotency-Key was used with a different request');
        return { status: 200, body: this.createdDto(prior) };
      }
    }
    const identical = await this.repo.findIdenticalPending({ appId: agent.appId, agentId: agent.agentId, requestHash }, now);
    if (identical) return { status: 200, body: this.createdDto(identical) };

    const enrolled = new Set((await this.factors.active(agent.appId, agent.userId)).map((f) => f.type));
    if (!methods.some((m) => enrolled.has(m))) throw new AppError('no_enrolled_factor', `the user has no active ${methods.join(' or ')} factor`);
    if ((await this.repo.countPendingForUser(agent.appId, agent.userId, now)) >= PENDING_CAP_PER_USER) {
      throw new AppError('too_many_pending', `the user already has ${PENDING_CAP_PER_USER} pending step-ups`, { headers: { 'Retry-After': String(POLL_INTERVAL_S * 6) } });
    }

    // A new push to the human (dedupe and idempotent replays above push nothing).
    await this.limits.consume('userPushes', userPushesKey(agent.appId, agent.userId));
    const id = newId('stepUp');
    const approvalToken = randomToken(TOKEN_PREFIX.approval);
    const s = Object.assign(new StepUpEntity(), {
      id,
      appId: agent.appId,
      agentId: agent.agentId,
      userId: agent.userId,
      model: agent.model,
      taskId: agent.taskId,
      action: dto.action,
      resource: dto.resource ?? null,
      details,
      detailsHash,
      bindingMessage: dto.bindingMessage ?? null,
      bindingCode: Array.from({ length: 6 }, () => BINDING_ALPHABET[randomInt(BINDING_ALPHABET.length)]).join(''),
      methods,
      grantType,
      grantScopes,
      grantDuration,
      agentJkt: agent.jkt,
      agentScopes: agent.scopes,
      status: 'pending',
      reason: null,
      method: null,
      amr: null,
      approvalTokenHash: hashSecret(approvalToken),
      approvalTokenEnc: this.cipher.encrypt(approvalToken, approvalAad(id)),
      idempotencyKey: idempotencyKey ?? null,
      requestHash,
      webauthnNonce: null,
      webauthnNonceExpiresAt: null,
      totpFailures: 0,
      tokenJti: null,
      tokenDeliveredAt: null,
      tokenExpiresAt: null,
      consumedAt: null,
      createdAt: now,
      expiresAt: now + (dto.expiresIn ?? 300) * 1000,
      decidedAt: null,
    });
    try {
      await this.repo.ds.transaction(async (m) => {
        await this.repo.insert(m, s);
        await this.audit.record(m, { appId: s.appId, type: 'step_up.created', outcome: 'success', action: s.action, resource: s.resource, status: 201 });
        await this.outbox.add(m, s.appId, 'step_up.created', eventData(s, { status: 'pending', approvalUrl: this.approvalUrl(s), bindingCode: s.bindingCode, expiresAt: iso(s.expiresAt) }));
      });
    } catch (err) {
      // A concurrent request with the same Idempotency-Key won: answer as its replay.
      if (idempotencyKey !== undefined && isUniqueViolation(err)) return this.create(agent, dto, idempotencyKey);
      throw err;
    }
    return { status: 201, body: this.createdDto(s) };
  }

  async get(agent: AgentPrincipal, id: string, wait = 0): Promise<StepUpDto> {
    let s = await this.findOwnOrThrow(agent, id);
    s = await this.decisions.expireIfDue(s);
    const now = this.clock.now();
    if (s.status === 'pending') {
      if (wait > 0) {
        await this.decisions.waitForChange(s.id, Math.min(wait * 1000, Math.max(0, s.expiresAt - now) + 50));
        s = await this.decisions.expireIfDue((await this.repo.find(s.appId, s.id))!);
      } else {
        const last = this.lastPoll.get(s.id);
        this.lastPoll.set(s.id, now);
        if (this.lastPoll.size > 10_000) this.lastPoll.clear();
        if (last !== undefined && now - last < POLL_INTERVAL_S * 1000) {
          throw new AppError('slow_down', `poll at most every ${POLL_INTERVAL_S} s, or use ?wait=`, { headers: { 'Retry-After': String(POLL_INTERVAL_S) } });
        }
      }
    }
    return this.toDto(s, await this.handOut(s));
  }

  async cancel(agent: AgentPrincipal, id: string): Promise<{ status: 'cancelled' }> {
    let s = await this.findOwnOrThrow(agent, id);
    s = await this.decisions.expireIfDue(s);
    if (s.status !== 'pending' || !(await this.decisions.decide(s, 'cancelled', { reason: 'cancelled_by_agent' }))) {
      throw new AppError('not_pending', 'the step-up was already decided');
    }
    return { status: 'cancelled' };
  }

  /** The token of an approved step-up, minted at the first fetch only (token_delivered_at guard). */
  private async handOut(s: StepUpEntity): Promise<Partial<StepUpDto>> {
    if (s.status !== 'approved') return {};
    if (s.tokenDeliveredAt !== null) return { tokenIssued: true };
    const now = this.clock.now();
    if (s.grantType === 'token') {
      const minted = await this.mfaTokens.mint(s);
      if (!(await this.repo.markDelivered(s, minted.jti, now, minted.expiresAt))) return { tokenIssued: true };
      return { mfaProxyToken: minted.token };
    }
    // Sudo: the requesting token's scopes plus the granted ones, until the end of the granted duration.
    const endsAt = (s.decidedAt ?? now) + s.grantDuration * 1000;
    const ttl = Math.floor((endsAt - now) / 1000);
    if (ttl <= 0) return { tokenIssued: false };
    const agent = { id: s.agentId, appId: s.appId, userId: s.userId, model: s.model } as AgentEntity;
    const issued = await this.agentTokens.issue({
      agent,
      scopes: [...new Set([...s.agentScopes, ...s.grantScopes])],
      ttlSeconds: ttl,
      taskId: s.taskId,
      jkt: s.agentJkt,
      extra: { acr: 'mfa', auth_time: Math.floor((s.decidedAt ?? now) / 1000), step_up_id: s.id },
    });
    if (!(await this.repo.markDelivered(s, issued.jti, now, now + ttl * 1000))) return { tokenIssued: true };
    return { sudoToken: issued.token, sudoExpiresAt: iso(now + ttl * 1000) };
  }

  private async findOwnOrThrow(agent: AgentPrincipal, id: string): Promise<StepUpEntity> {
    const s = isId('stepUp', id) ? await this.repo.find(agent.appId, id) : null;
    // Only the requesting agent sees its step-up; any other caller gets 404.
    if (!s || s.agentId !== agent.agentId) throw notFound('step-up');
    return s;
  }

  approvalUrl(s: StepUpEntity): string {
    return `${this.config.publicUrl}/approve/${this.cipher.decryptString(s.approvalTokenEnc, approvalAad(s.id))}`;
  }

  private createdDto(s: StepUpEntity): CreatedStepUpDto {
    const { expiresAt, ...common } = this.commonDto(s);
    return { ...common, bindingCode: s.bindingCode, approvalUrl: this.approvalUrl(s), expiresAt, interval: POLL_INTERVAL_S };
  }

  private commonDto(s: StepUpEntity) {
    return { id: s.id, status: s.status, action: s.action, resource: s.resource, detailsHash: s.detailsHash, expiresAt: iso(s.expiresAt) };
  }

  private toDto(s: StepUpEntity, token: Partial<StepUpDto>): StepUpDto {
    return {
      ...this.commonDto(s),
      ...(s.decidedAt !== null ? { decidedAt: iso(s.decidedAt) } : {}),
      ...(s.method ? { method: s.method } : {}),
      ...(s.reason ? { reason: s.reason } : {}),
      ...token,
    };
  }
}
