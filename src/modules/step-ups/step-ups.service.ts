import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomInt } from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import type { Caller } from '../../common/auth/principals.js';
import { Clock } from '../../common/clock.js';
import { iso } from '../../common/time.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { hashSecret, randomToken, sha256, TOKEN_PREFIX } from '../../common/crypto/tokens.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId, newId } from '../../common/ids.js';
import { withinBoundaries } from '../../common/scopes.js';
import { isUniqueViolation } from '../../database/errors.js';
import { Serializer } from '../../database/serializer.js';
import { AppsService } from '../apps/apps.service.js';
import { AuditLog } from '../../common/audit-log.js';
import { OutboxService } from '../events/outbox.service.js';
import type { FactorType } from '../factors/factor.entity.js';
import { FactorsRepository } from '../factors/factors.repository.js';
import { AgentTokensService } from '../oauth/agent-tokens.service.js';
import { agentPushesKey, stepUpCreateKey, userPushesKey } from '../rate-limit/buckets.js';
import { RateLimitService } from '../rate-limit/rate-limit.service.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import type { CreateStepUpRequestDto } from './dto/create-step-up-request.dto.js';
import type { CreatedStepUpDto, StepUpDto } from './dto/step-up.dto.js';
import { FatigueService } from './fatigue.service.js';
import { MfaProxyTokenMinter } from './mfa-proxy-token.js';
import { TxnTokenMinter } from './txn-token.js';
import { Requesters, requesterBinding, tokenBinding, type Requester } from './requester.js';
import { StepUpDecisions, eventData } from './step-up-decisions.js';
import { StepUpEntity } from './step-up.entity.js';
import { StepUpsRepository } from './step-ups.repository.js';
import { canonicalJson, hashDetails } from '../../common/canonical-json.js';

/** Defaults that API.md fixes (tests rely on them). */
export const PENDING_CAP_PER_USER = 5;
export const POLL_INTERVAL_S = 5;
const DETAILS_MAX_BYTES = 8 * 1024;
const IDEMPOTENCY_WINDOW_MS = 24 * 3600_000;
const SWEEP_EVERY_MS = 5_000;
/** No 0/O, 1/I/L: easy to compare by eye. */
const BINDING_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';

const pendingCapKey = (appId: string, userId: string) => `step-ups:pending:${appId}:${userId}`;
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
    private readonly mfaTokens: MfaProxyTokenMinter,
    private readonly txnTokens: TxnTokenMinter,
    private readonly agentTokens: AgentTokensService,
    private readonly audit: AuditLog,
    private readonly outbox: OutboxService,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
    private readonly limits: RateLimitService,
    private readonly fatigue: FatigueService,
    private readonly requesters: Requesters,
    private readonly apps: AppsService,
    private readonly serializer: Serializer,
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

  async create(caller: Caller, dto: CreateStepUpRequestDto, idempotencyKey?: string): Promise<{ status: 200 | 201; body: CreatedStepUpDto }> {
    if (idempotencyKey !== undefined && (idempotencyKey.length < 1 || idempotencyKey.length > 255)) throw new AppError('validation_failed', 'Idempotency-Key must be 1..255 characters');
    const r = await this.requesters.resolveOrThrow(caller, dto.agentId);
    const revealUrl = async () => r.initiator === 'app' || (await this.apps.findOrThrow(r.appId)).approvalUrlToAgent;
    const { status, stepUp } = await this.createFor(r, dto, idempotencyKey);
    return { status, body: this.createdDto(stepUp, await revealUrl()) };
  }

  /**
   * The one creation path of every step-up (POST /v1/step-ups, and the backchannels through
   * backchannel.ts): authority, cooldown, dedupe, idempotency, the pending cap, push budgets,
   * audit and the step_up.created event. `decorate` adds a caller's own columns to a new row
   * before it is inserted (never to a replayed or deduplicated one). 201 new, 200 the same request's step-up.
   */
  async createFor(r: Requester, dto: CreateStepUpRequestDto, idempotencyKey?: string, decorate?: (s: StepUpEntity) => void): Promise<{ status: 200 | 201; stepUp: StepUpEntity }> {
    await this.limits.consume('stepUpCreate', stepUpCreateKey(r.agentId));
    // The action must lie within the caller's authority; nothing is pushed otherwise.
    if (!withinBoundaries(r.authority, dto.action)) throw new AppError('action_not_permitted', `the action is not covered by ${r.initiator === 'app' ? "the agent's permission boundaries" : "the calling token's scope"}`);
    await this.fatigue.assertNotCoolingDown(r);
    const details = dto.details ?? {};
    if (Buffer.byteLength(canonicalJson(details)) > DETAILS_MAX_BYTES) throw new AppError('validation_failed', 'details must be at most 8 KiB as JSON');
    const grantType = dto.grant?.type ?? 'token';
    const grantScopes = grantType === 'sudo' ? [...new Set(dto.grant?.scopes ?? [])] : [];
    if (grantType === 'sudo') {
      if (r.initiator === 'app') throw new AppError('validation_failed', 'an app-initiated step-up grants a single-use token, not sudo');
      if (grantScopes.length === 0) throw new AppError('validation_failed', 'a sudo grant needs scopes');
      const outside = grantScopes.find((scope) => !withinBoundaries(r.sudoAuthority, scope));
      if (outside) throw new AppError('action_not_permitted', `a requested sudo scope is outside ${r.workerTaskId ? "this task's scopes" : "this agent's permission boundaries"}`);
    } else if (dto.grant?.scopes || dto.grant?.duration) {
      throw new AppError('validation_failed', 'scopes and duration apply to sudo grants only');
    }
    const grantDuration = grantType === 'sudo' ? (dto.grant?.duration ?? 300) : 0;
    const methods: FactorType[] = dto.methods ?? ['webauthn', 'totp'];
    const detailsHash = hashDetails(details);
    // What makes two requests "the same": idempotency and identical-pending dedupe compare this.
    // The requesting token's authority is part of it: a token never joins (or replays) a step-up
    // asked for by another token with other scopes, another DPoP key or another task.
    const requestHash = sha256(canonicalJson({ action: dto.action, resource: dto.resource ?? null, detailsHash, grant: { type: grantType, scopes: grantScopes, duration: grantDuration }, by: requesterBinding(r) })).toString('base64url');
    const sameBody = (prior: StepUpEntity) =>
      prior.requestHash === requestHash && canonicalJson({ m: prior.methods, b: prior.bindingMessage }) === canonicalJson({ m: methods, b: dto.bindingMessage ?? null });
    const now = this.clock.now();
    const reply = (status: 200 | 201, stepUp: StepUpEntity) => ({ status, stepUp });

    // Replays and duplicates are answered without spending a push (checked again under the lock).
    const replay = await this.replayOrNull(r, idempotencyKey, sameBody, now);
    if (replay) return reply(200, replay);
    const identical = await this.repo.findIdenticalPending({ appId: r.appId, agentId: r.agentId, initiator: r.initiator, requestHash }, now);
    if (identical) return reply(200, identical);
    const enrolled = new Set((await this.factors.active(r.appId, r.userId)).map((f) => f.type));
    if (!methods.some((m) => enrolled.has(m))) throw new AppError('no_enrolled_factor', `the user has no active ${methods.join(' or ')} factor`);

    const s = this.newStepUp(r, dto, { details, detailsHash, grantType, grantScopes, grantDuration, methods, requestHash, idempotencyKey: idempotencyKey ?? null, now });
    decorate?.(s);
    // One creation at a time per user (across instances on PostgreSQL): the pending cap, the
    // idempotency key and the dedupe are decided on what is committed, never on a stale count.
    try {
      return await this.serializer.run(pendingCapKey(r.appId, r.userId), async (m) => {
        const prior = await this.replayOrNull(r, idempotencyKey, sameBody, now, m);
        if (prior) return reply(200, prior);
        const twin = await this.repo.findIdenticalPending(s, now, m);
        if (twin) return reply(200, twin);
        if ((await this.repo.countPendingForUser(r.appId, r.userId, now, m)) >= PENDING_CAP_PER_USER) {
          throw new AppError('too_many_pending', `the user already has ${PENDING_CAP_PER_USER} pending step-ups`, { headers: { 'Retry-After': String(POLL_INTERVAL_S * 6) } });
        }
        // A new push to the human: spent only now, when one is really made (a 429 rolls everything back).
        await this.limits.consume('agentPushes', agentPushesKey(r.agentId));
        await this.limits.consume('userPushes', userPushesKey(r.appId, r.userId));
        await this.repo.insert(m, s);
        await this.audit.record(m, { appId: s.appId, type: 'step_up.created', outcome: 'success', userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId, action: s.action, resource: s.resource, status: 201 });
        await this.outbox.add(m, s.appId, 'step_up.created', eventData(s, { status: 'pending', approvalUrl: this.approvalUrl(s), bindingCode: s.bindingCode, expiresAt: iso(s.expiresAt) }));
        return reply(201, s);
      });
    } catch (err) {
      // Only reachable if the key was taken outside the serialized section: answer as its replay.
      if (idempotencyKey !== undefined && isUniqueViolation(err)) {
        const prior = await this.replayOrNull(r, idempotencyKey, sameBody, now);
        if (prior) return reply(200, prior);
      }
      throw err;
    }
  }

  /**
   * The step-up an Idempotency-Key already names within its 24 h window (422 for another body), or
   * null. Past the window the old step-up lets go of the key (inside the serialized section).
   */
  private async replayOrNull(r: Requester, key: string | undefined, sameBody: (prior: StepUpEntity) => boolean, now: number, m?: EntityManager): Promise<StepUpEntity | null> {
    if (key === undefined) return null;
    const prior = await this.repo.findByIdempotencyKey(r.appId, r.agentId, r.initiator, key, m);
    if (!prior) return null;
    if (prior.createdAt <= now - IDEMPOTENCY_WINDOW_MS) {
      if (m) await this.repo.releaseIdempotencyKey(m, prior);
      return null;
    }
    if (!sameBody(prior)) throw new AppError('idempotency_key_reuse', 'this Idempotency-Key was used with a different request');
    return prior;
  }

  private newStepUp(
    r: Requester,
    dto: CreateStepUpRequestDto,
    v: { details: Record<string, unknown>; detailsHash: string; grantType: StepUpEntity['grantType']; grantScopes: string[]; grantDuration: number; methods: FactorType[]; requestHash: string; idempotencyKey: string | null; now: number },
  ): StepUpEntity {
    const id = newId('stepUp');
    const approvalToken = randomToken(TOKEN_PREFIX.approval);
    return Object.assign(new StepUpEntity(), {
      id,
      appId: r.appId,
      agentId: r.agentId,
      userId: r.userId,
      model: r.model,
      taskId: r.taskId,
      action: dto.action,
      resource: dto.resource ?? null,
      details: v.details,
      detailsHash: v.detailsHash,
      bindingMessage: dto.bindingMessage ?? null,
      bindingCode: Array.from({ length: 6 }, () => BINDING_ALPHABET[randomInt(BINDING_ALPHABET.length)]).join(''),
      methods: v.methods,
      grantType: v.grantType,
      grantScopes: v.grantScopes,
      grantDuration: v.grantDuration,
      agentJkt: r.jkt,
      agentScopes: r.tokenScopes,
      initiator: r.initiator,
      workerTaskId: r.workerTaskId,
      status: 'pending',
      reason: null,
      method: null,
      amr: null,
      approvalTokenHash: hashSecret(approvalToken),
      approvalTokenEnc: this.cipher.encrypt(approvalToken, approvalAad(id)),
      idempotencyKey: v.idempotencyKey,
      requestHash: v.requestHash,
      webauthnNonce: null,
      webauthnNonceExpiresAt: null,
      totpFailures: 0,
      tokenJti: null,
      tokenDeliveredAt: null,
      tokenExpiresAt: null,
      consumedAt: null,
      createdAt: v.now,
      expiresAt: v.now + (dto.expiresIn ?? 300) * 1000,
      decidedAt: null,
    });
  }

  async get(caller: Caller, id: string, wait = 0): Promise<StepUpDto> {
    let s = await this.findOwnOrThrow(caller, id);
    s = await this.decisions.expireIfDue(s);
    const now = this.clock.now();
    if (s.status === 'pending') {
      if (wait > 0) {
        // Listening before reading again: a decision between the first read and the wait still wakes it.
        const watch = this.decisions.watchChange(s.id, Math.min(wait * 1000, Math.max(0, s.expiresAt - now) + 50));
        try {
          if ((await this.repo.find(s.appId, s.id))?.status === 'pending') await watch.changed;
        } finally {
          watch.stop();
        }
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

  async cancel(caller: Caller, id: string): Promise<{ status: 'cancelled' }> {
    let s = await this.findOwnOrThrow(caller, id);
    s = await this.decisions.expireIfDue(s);
    if (s.status !== 'pending' || !(await this.decisions.decide(s, 'cancelled', { reason: `cancelled_by_${caller.kind}` }))) {
      throw new AppError('not_pending', 'the step-up was already decided');
    }
    return { status: 'cancelled' };
  }

  /**
   * The token of an approved step-up, minted at the first fetch only (token_delivered_at guard),
   * and only until the step-up's expiresAt: a late fetch gets nothing (API.md v1.1).
   * `beforeHandOut` runs once every check has passed, before the token is minted and the hand-out
   * recorded: what the caller's answer needs besides the token and can fail (an ID token to sign)
   * then fails while the approval can still be collected, not after it was spent on an answer never sent.
   */
  async handOut(s: StepUpEntity, options: { jkt?: string | null; beforeHandOut?: (s: StepUpEntity) => Promise<void> | void } = {}): Promise<Partial<StepUpDto>> {
    if (s.status !== 'approved') return {};
    // Delivered, or voided (no jti) when the agent's boundaries were narrowed below it.
    if (s.tokenDeliveredAt !== null) return s.tokenJti !== null ? { tokenIssued: true } : { tokenIssued: false };
    const now = this.clock.now();
    if (s.expiresAt <= now) return { tokenIssued: false, reason: 'expired' };
    // Boundaries narrowed (or the agent stopped) since the request: nothing beyond them is handed out.
    for (const scope of [s.action, ...s.grantScopes]) if (!(await this.agentTokens.permits(s.agentId, s.userId, scope))) return { tokenIssued: false, reason: 'revoked' };
    if (s.grantType === 'token') {
      await options.beforeHandOut?.(s);
      // A transaction challenge's step-up (TAC) hands out its access token for the app's resource
      // (bound to the poll's DPoP key, if any) as its single-use token, in the same place.
      const minted = s.initiator === 'txn' ? await this.txnTokens.mint(s, options.jkt ?? null) : await this.mfaTokens.mint(s);
      // Its hash is stored with its jti: verification admits this exact token by it (MfaProxyTokensService).
      if (!(await this.repo.markDelivered(s, minted.jti, now, minted.expiresAt, hashSecret(minted.token)))) return { tokenIssued: true };
      return { mfaProxyToken: minted.token };
    }
    // Sudo: the requesting token's scopes plus the granted ones; exp is the end of the granted
    // duration from the approval (sudoExpiresAt), whenever the token is fetched.
    const exp = Math.floor(((s.decidedAt ?? now) + s.grantDuration * 1000) / 1000);
    const ttl = exp - this.clock.nowSeconds();
    if (ttl <= 0) return { tokenIssued: false, reason: 'expired' };
    await options.beforeHandOut?.(s);
    const agent = { id: s.agentId, appId: s.appId, userId: s.userId, model: s.model } as AgentEntity;
    const issued = await this.agentTokens.issue({
      agent,
      scopes: [...new Set([...s.agentScopes, ...s.grantScopes])],
      ttlSeconds: ttl,
      taskId: s.taskId,
      // A backchannel (CIBA) step-up has no asking token: its sudo token is bound to the redeeming poll's DPoP key, if any.
      jkt: s.agentJkt ?? options.jkt ?? null,
      extra: { acr: 'mfa', auth_time: Math.floor((s.decidedAt ?? now) / 1000), step_up_id: s.id, ...(s.workerTaskId ? { tsk: s.workerTaskId } : {}) },
    });
    if (!(await this.repo.markDelivered(s, issued.jti, now, exp * 1000))) return { tokenIssued: true };
    return { sudoToken: issued.token, sudoExpiresAt: iso(exp * 1000) };
  }

  private async findOwnOrThrow(caller: Caller, id: string): Promise<StepUpEntity> {
    const appId = caller.kind === 'agent' ? caller.agent.appId : caller.app.appId;
    const s = isId('stepUp', id) ? await this.repo.find(appId, id) : null;
    // Only who asked sees a step-up (and so its token): the app those it initiated; an agent those
    // its token asked for with the same authority (scopes, DPoP key, task), so a narrower token or
    // a worker cannot collect a token minted from a broader one. Anyone else: 404.
    const own = caller.kind === 'agent'
      ? s?.initiator === 'agent' && s.agentId === caller.agent.agentId
        && tokenBinding(caller.agent.scopes, caller.agent.jkt, caller.agent.workerTaskId) === tokenBinding(s.agentScopes, s.agentJkt, s.workerTaskId)
      : s?.initiator === 'app';
    if (!s || !own) throw notFound('step-up');
    return s;
  }

  approvalUrl(s: StepUpEntity): string {
    return `${this.config.publicUrl}/approve/${this.cipher.decryptString(s.approvalTokenEnc, approvalAad(s.id))}`;
  }

  /** `approvalUrl` is the human's capability: the agent sees it only if its app chose so (approvalUrlToAgent). */
  private createdDto(s: StepUpEntity, revealUrl: boolean): CreatedStepUpDto {
    const { expiresAt, ...common } = this.commonDto(s);
    return { ...common, bindingCode: s.bindingCode, ...(revealUrl ? { approvalUrl: this.approvalUrl(s) } : {}), expiresAt, interval: POLL_INTERVAL_S };
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
