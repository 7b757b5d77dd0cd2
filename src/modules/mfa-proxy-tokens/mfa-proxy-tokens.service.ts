import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { AuditService } from '../audit/audit.service.js';
import { OutboxService } from '../events/outbox.service.js';
import { appVerifyKey } from '../rate-limit/buckets.js';
import { RateLimitService } from '../rate-limit/rate-limit.service.js';
import { KeysService } from '../keys/keys.service.js';
import { AgentTokensService } from '../oauth/agent-tokens.service.js';
import { TokenInvalidError, verifyOwnJwt } from '../oauth/token-verifier.js';
import { StepUpEntity } from '../step-ups/step-up.entity.js';
import { eventData } from '../step-ups/step-up-decisions.js';
import { hashDetails } from '../../common/canonical-json.js';
import type { VerifyMfaProxyTokenDto, VerifyReason, VerifyResultDto } from './dto/verify.dto.js';

export const MFA_PROXY_TYP = 'mfa-proxy+jwt';
/** API.md: default 120 s (30..600). */
export const MFA_PROXY_TOKEN_TTL_S = 120;

interface MfaProxyClaims {
  iss: string; aud: string; sub: string; client_id: string; act: { sub: string }; jti: string; iat: number; exp: number;
  auth_time: number; amr: string[]; step_up_id: string; action: string; resource: string | null; details_hash: string; model: string; task_id: string | null;
}

const invalid = (reason: VerifyReason): VerifyResultDto => ({ valid: false, reason });

/** Mints single-use MFA-proxy tokens at hand-out and verifies-and-consumes them for apps. */
@Injectable()
export class MfaProxyTokensService {
  constructor(
    private readonly ds: DataSource,
    private readonly keys: KeysService,
    private readonly agents: AgentTokensService,
    private readonly audit: AuditService,
    private readonly outbox: OutboxService,
    private readonly clock: Clock,
    private readonly limits: RateLimitService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Signs the token of an approved step-up. Only its jti is stored (by the caller). */
  async mint(s: StepUpEntity): Promise<{ token: string; jti: string; expiresAt: number }> {
    const now = this.clock.nowSeconds();
    const jti = randomUUID();
    const claims: MfaProxyClaims = {
      iss: this.config.issuer,
      aud: s.appId,
      sub: s.userId,
      client_id: s.agentId,
      act: { sub: s.agentId },
      jti,
      iat: now,
      exp: now + MFA_PROXY_TOKEN_TTL_S,
      auth_time: Math.floor((s.decidedAt ?? this.clock.now()) / 1000),
      amr: s.amr ?? [],
      step_up_id: s.id,
      action: s.action,
      resource: s.resource,
      details_hash: s.detailsHash,
      model: s.model,
      task_id: s.taskId,
    };
    return { token: await this.keys.sign({ ...claims }, MFA_PROXY_TYP), jti, expiresAt: claims.exp * 1000 };
  }

  /** Checks in order: form, signature, audience, expiry, the bound request, the agent; then consumes once. */
  async verify(appId: string, dto: VerifyMfaProxyTokenDto): Promise<VerifyResultDto> {
    await this.limits.consume('appVerify', appVerifyKey(appId));
    let claims: MfaProxyClaims;
    try {
      // Audience is checked below so a foreign token reads `wrong_audience`, not a generic failure.
      claims = (await verifyOwnJwt(this.keys, dto.token, { typ: MFA_PROXY_TYP, issuer: this.config.issuer, nowSeconds: this.clock.nowSeconds(), toleranceSeconds: 0 })).payload as unknown as MfaProxyClaims;
    } catch (err) {
      if (err instanceof TokenInvalidError) return this.fail(appId, dto, err.reason === 'invalid' ? 'malformed' : err.reason, err.verifiedPayload as Partial<MfaProxyClaims> | undefined);
      throw err;
    }
    if (typeof claims.step_up_id !== 'string' || typeof claims.action !== 'string') return this.fail(appId, dto, 'malformed', claims);
    if (claims.aud !== appId) return this.fail(appId, dto, 'wrong_audience', claims);
    // The token approves one exact request: a mismatch is refused and does not consume it.
    if (dto.action !== claims.action) return this.fail(appId, dto, 'action_mismatch', claims);
    if ((dto.resource ?? null) !== (claims.resource ?? null)) return this.fail(appId, dto, 'resource_mismatch', claims);
    if (hashDetails(dto.details) !== claims.details_hash) return this.fail(appId, dto, 'details_mismatch', claims);
    if (dto.agentId !== undefined && dto.agentId !== claims.client_id) return this.fail(appId, dto, 'agent_mismatch', claims);
    if (!(await this.agents.isActive(claims.client_id, claims.sub))) return this.fail(appId, dto, 'revoked', claims);

    const now = this.clock.now();
    const result = await this.ds.transaction(async (m) => {
      // Single use: one conditional write; one row changed means this call consumed it.
      const res = await m
        .createQueryBuilder()
        .update(StepUpEntity)
        .set({ consumedAt: now })
        .where('app_id = :appId AND token_jti = :jti AND consumed_at IS NULL AND status = :approved', { appId, jti: claims.jti, approved: 'approved' })
        .execute();
      if ((res.affected ?? 0) !== 1) return null;
      const s = (await m.findOneBy(StepUpEntity, { appId, id: claims.step_up_id }))!;
      await this.audit.record(m, { appId, type: 'mfa_proxy_token.consumed', outcome: 'success', userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId, action: s.action, resource: s.resource, status: 200 });
      await this.outbox.add(m, appId, 'mfa_proxy_token.consumed', eventData(s));
      return s;
    });
    if (!result) {
      // Not consumed by us: used before, or its step-up was cancelled since.
      const s = await this.ds.getRepository(StepUpEntity).findOneBy({ appId, tokenJti: claims.jti });
      return this.fail(appId, dto, s && s.status !== 'approved' ? 'revoked' : 'already_used', claims);
    }
    return {
      valid: true,
      stepUpId: result.id,
      userId: result.userId,
      agentId: result.agentId,
      model: result.model,
      taskId: result.taskId,
      action: result.action,
      resource: result.resource,
      detailsHash: result.detailsHash,
      method: result.method ?? undefined,
      approvedAt: new Date(result.decidedAt!).toISOString(),
    };
  }

  /**
   * A refusal, audited in one insert (no transaction: nothing else changes). It names the user and
   * agent when the token's signature was ours and valid and it was issued for this app; otherwise nobody.
   */
  private async fail(appId: string, dto: VerifyMfaProxyTokenDto, reason: VerifyReason, claims?: Partial<MfaProxyClaims>): Promise<VerifyResultDto> {
    const who = claims && claims.aud === appId ? { userId: claims.sub ?? null, agentId: claims.client_id ?? null, model: claims.model ?? null, taskId: claims.task_id ?? null } : { userId: null, agentId: null };
    await this.audit.record(this.ds.manager, { appId, type: `mfa_proxy_token.verify_failed.${reason}`, outcome: 'failure', action: dto.action, resource: dto.resource ?? null, status: 200, ...who });
    return invalid(reason);
  }
}
