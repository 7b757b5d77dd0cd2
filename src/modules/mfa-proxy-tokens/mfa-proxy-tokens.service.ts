import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { AuditLog } from '../../common/audit-log.js';
import { appVerifyKey } from '../rate-limit/buckets.js';
import { RateLimitService } from '../rate-limit/rate-limit.service.js';
import { KeysService } from '../keys/keys.service.js';
import { AgentTokensService } from '../oauth/agent-tokens.service.js';
import { readOwnJwt, TokenInvalidError, verifyOwnJwt } from '../oauth/token-verifier.js';
import { isTokenJti, MFA_PROXY_TYP, type MfaProxyClaims } from '../step-ups/mfa-proxy-token.js';
import { StepUpsRepository, type ConsumedStepUp } from '../step-ups/step-ups.repository.js';
import { hashSecret } from '../../common/crypto/tokens.js';
import { TokenConsumer } from './token-consumer.js';
import { hashDetails } from '../../common/canonical-json.js';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { AppsService } from '../apps/apps.service.js';
import { TXN_TOKEN_TYP, type TxnTokenClaims } from '../step-ups/txn-token.js';
import type { VerifyMfaProxyTokenDto, VerifyReason, VerifyResultDto } from './dto/verify.dto.js';

const invalid = (reason: VerifyReason): VerifyResultDto => ({ valid: false, reason });

/**
 * A TAC access token (`at+jwt` carrying `txn`), told from an MFA-proxy token by its header and
 * unverified claims only to pick the checks; every claim is then verified. Anything else takes the
 * MFA-proxy path unchanged (an agent token there stays `malformed`).
 */
function isTxnToken(token: string): boolean {
  try {
    return decodeProtectedHeader(token).typ === TXN_TOKEN_TYP && typeof decodeJwt(token).txn === 'string';
  } catch {
    return false;
  }
}

/** Verifies-and-consumes MFA-proxy tokens for apps (they are minted at hand-out by the step-ups module). */
@Injectable()
export class MfaProxyTokensService {
  constructor(
    private readonly stepUps: StepUpsRepository,
    private readonly keys: KeysService,
    private readonly agents: AgentTokensService,
    private readonly audit: AuditLog,
    private readonly consumer: TokenConsumer,
    private readonly clock: Clock,
    private readonly limits: RateLimitService,
    private readonly apps: AppsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Verifies and consumes once: by the issued token's hash when it passes every check, else by its signature (verifySigned). */
  async verify(appId: string, dto: VerifyMfaProxyTokenDto): Promise<VerifyResultDto> {
    await this.limits.consume('appVerify', appVerifyKey(appId));
    if (isTxnToken(dto.token)) return this.verifyTxn(appId, dto);
    return (await this.consumeIssued(appId, dto)) ?? this.verifySigned(appId, dto);
  }

  /**
   * The hot path. A token whose hash is the one stored when it was handed out is that token, byte
   * for byte: its claims are the ones we signed, so its signature (an ECDSA verification, the
   * largest single cost of a verification) need not be checked. Every other check is made as in
   * verifySigned (form, our `kid`, issuer, expiry, audience, the bound request, the agent, from the
   * cache), and the token is consumed only under that hash, in the same conditional write (TokenConsumer).
   * Anything else returns null, and verifySigned decides it from the start, signature first: a
   * check that fails, a token not consumed here (used, cancelled, altered, the other ECDSA string
   * of the same signature, or handed out before hashes were stored). So every refusal keeps its
   * reason, and nothing is refused here that verifySigned would accept.
   */
  private async consumeIssued(appId: string, dto: VerifyMfaProxyTokenDto): Promise<VerifyResultDto | null> {
    let claims: MfaProxyClaims;
    try {
      claims = (await readOwnJwt(this.keys, dto.token, { typ: MFA_PROXY_TYP, issuer: this.config.issuer, nowSeconds: this.clock.nowSeconds(), toleranceSeconds: 0 })).payload as unknown as MfaProxyClaims;
    } catch (err) {
      if (err instanceof TokenInvalidError) return null;
      throw err;
    }
    // Unsigned claims: only a jti of our form goes to the shared consumer (whose batch serves other
    // apps' verifications too), and the agent comes from the cache (a made-up client_id costs no query).
    if (!isTokenJti(claims.jti) || typeof claims.client_id !== 'string' || typeof claims.sub !== 'string') return null;
    if (this.mismatch(appId, dto, claims) !== null || this.agents.permitsCached(claims.client_id, claims.sub, claims.action) !== true) return null;
    const result = await this.consumer.consume(appId, claims.jti, hashSecret(dto.token));
    return result && this.valid(result);
  }

  /** Checks in order: form, signature, audience, expiry, the bound request, the agent; then consumes once. */
  private async verifySigned(appId: string, dto: VerifyMfaProxyTokenDto): Promise<VerifyResultDto> {
    let claims: MfaProxyClaims;
    try {
      // Audience is checked below so a foreign token reads `wrong_audience`, not a generic failure.
      claims = (await verifyOwnJwt(this.keys, dto.token, { typ: MFA_PROXY_TYP, issuer: this.config.issuer, nowSeconds: this.clock.nowSeconds(), toleranceSeconds: 0 })).payload as unknown as MfaProxyClaims;
    } catch (err) {
      if (err instanceof TokenInvalidError) return this.fail(appId, dto, err.reason === 'invalid' ? 'malformed' : err.reason, err.verifiedPayload as Partial<MfaProxyClaims> | undefined);
      throw err;
    }
    const mismatch = this.mismatch(appId, dto, claims);
    if (mismatch !== null) return this.fail(appId, dto, mismatch, claims);
    // The agent revoked or suspended, its user deleted, or its boundaries narrowed below the action since approval.
    if (!(await this.agents.permits(claims.client_id, claims.sub, claims.action))) return this.fail(appId, dto, 'revoked', claims);

    return this.consumeOnce(appId, dto, claims.jti, claims);
  }

  /** How an MFA-proxy token's claims fail the request the app verifies it for, in order; null if they fit. */
  private mismatch(appId: string, dto: VerifyMfaProxyTokenDto, claims: MfaProxyClaims): VerifyReason | null {
    if (typeof claims.step_up_id !== 'string' || typeof claims.action !== 'string') return 'malformed';
    if (claims.aud !== appId) return 'wrong_audience';
    // A transaction id belongs to a TAC token: an MFA-proxy token is bound to no transaction.
    if (dto.txn !== undefined && dto.txn !== null) return 'details_mismatch';
    // The token approves one exact request: a mismatch is refused and does not consume it.
    if (dto.action !== claims.action) return 'action_mismatch';
    if ((dto.resource ?? null) !== (claims.resource ?? null)) return 'resource_mismatch';
    if (hashDetails(dto.details) !== claims.details_hash) return 'details_mismatch';
    if (dto.agentId !== undefined && dto.agentId !== claims.client_id) return 'agent_mismatch';
    return null;
  }

  /** Single use: one conditional write (with its audit row and event), batched with concurrent verifications. */
  private async consumeOnce(appId: string, dto: VerifyMfaProxyTokenDto, jti: string, who: Partial<MfaProxyClaims>, extra: Partial<VerifyResultDto> = {}): Promise<VerifyResultDto> {
    const result = await this.consumer.consume(appId, jti);
    if (!result) {
      // Not consumed by us: used before, or its step-up was cancelled since.
      const s = await this.stepUps.findByTokenJti(appId, jti);
      return this.fail(appId, dto, s && s.status !== 'approved' ? 'revoked' : 'already_used', who);
    }
    return this.valid(result, extra);
  }

  /** The answer for a token this verification consumed. */
  private valid(result: ConsumedStepUp, extra: Partial<VerifyResultDto> = {}): VerifyResultDto {
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
      ...extra,
    };
  }

  /**
   * A TAC access token (draft-rosomakho-oauth-txn-challenge-00 §6.2), verified for the app whose
   * resource is its audience and consumed exactly once through the same path as MFA-proxy tokens
   * (the step-up's token jti; its audit row and event in the consuming transaction).
   */
  private async verifyTxn(appId: string, dto: VerifyMfaProxyTokenDto): Promise<VerifyResultDto> {
    let claims: TxnTokenClaims;
    try {
      // Our signature, typ at+jwt, our issuer, time claims; the audience is the app's resource (below).
      claims = (await verifyOwnJwt(this.keys, dto.token, { typ: TXN_TOKEN_TYP, issuer: this.config.issuer, nowSeconds: this.clock.nowSeconds(), toleranceSeconds: 0 })).payload as unknown as TxnTokenClaims;
    } catch (err) {
      if (err instanceof TokenInvalidError) return this.fail(appId, dto, err.reason === 'invalid' ? 'malformed' : err.reason);
      throw err;
    }
    const detail = Array.isArray(claims.authorization_details) && claims.authorization_details.length === 1 ? (claims.authorization_details[0] as { action?: unknown; resource?: unknown; details?: unknown }) : null;
    // An agent access token (it has a scope) or anything else that is not a TAC token of ours.
    if (!detail || typeof detail.action !== 'string' || typeof claims.txn !== 'string' || typeof claims.client_id !== 'string' || claims.act?.sub !== claims.client_id || 'scope' in claims) {
      return this.fail(appId, dto, 'malformed');
    }
    // §6.2: the token's audience is this app's resource; no other app may consume it.
    const resource = (await this.apps.findOrThrow(appId)).resource;
    if (resource === null || claims.aud !== resource) return this.fail(appId, dto, 'wrong_audience');
    const who = { aud: appId, sub: claims.sub, client_id: claims.client_id };
    // §6.2: bound to the same txn as the challenge the app issued (required: it names the operation).
    if (dto.txn !== claims.txn) return this.fail(appId, dto, 'details_mismatch', who);
    // What the app names besides must match the granted authorization detail.
    if (dto.action !== undefined && dto.action !== detail.action) return this.fail(appId, dto, 'action_mismatch', who);
    if (dto.resource !== undefined && dto.resource !== null && dto.resource !== (detail.resource ?? null)) return this.fail(appId, dto, 'resource_mismatch', who);
    if (dto.details !== undefined && dto.details !== null && hashDetails(dto.details) !== hashDetails(detail.details as Record<string, unknown> | undefined)) return this.fail(appId, dto, 'details_mismatch', who);
    if (dto.agentId !== undefined && dto.agentId !== null && dto.agentId !== claims.client_id) return this.fail(appId, dto, 'agent_mismatch', who);
    // RFC 9449 §7: a DPoP-bound token is good only from the holder of its key. The app checks the
    // proof it was presented with; the key it names (`jkt`) must be the token's, or it is refused unconsumed.
    const boundTo = claims.cnf?.jkt ?? null;
    if (dto.jkt !== undefined && dto.jkt !== null && boundTo !== null && dto.jkt !== boundTo) return this.fail(appId, dto, 'agent_mismatch', who);
    if (!(await this.agents.permits(claims.client_id, claims.sub, detail.action))) return this.fail(appId, dto, 'revoked', who);
    // The binding travels with the answer, so an app that did not send `jkt` still learns it must check a proof.
    return this.consumeOnce(appId, dto, claims.jti, who, { txn: claims.txn, ...(boundTo ? { cnf: { jkt: boundTo } } : {}) });
  }

  /**
   * A refusal, audited in one insert (no transaction: nothing else changes). It names the user and
   * agent when the token's signature was ours and valid and it was issued for this app; otherwise nobody.
   */
  private async fail(appId: string, dto: VerifyMfaProxyTokenDto, reason: VerifyReason, claims?: Partial<MfaProxyClaims>): Promise<VerifyResultDto> {
    const who = claims && claims.aud === appId ? { userId: claims.sub ?? null, agentId: claims.client_id ?? null, model: claims.model ?? null, taskId: claims.task_id ?? null } : { userId: null, agentId: null };
    await this.audit.record(this.stepUps.ds.manager, { appId, type: `mfa_proxy_token.verify_failed.${reason}`, outcome: 'failure', action: dto.action, resource: dto.resource ?? null, status: 200, ...who });
    return invalid(reason);
  }
}
