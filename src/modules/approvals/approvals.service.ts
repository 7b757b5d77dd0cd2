import { Injectable } from '@nestjs/common';
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { randomBytes } from 'node:crypto';
import { Clock } from '../../common/clock.js';
import { ShutdownState } from '../../common/shutdown.js';
import { hashSecret, TOKEN_PREFIX } from '../../common/crypto/tokens.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId } from '../../common/ids.js';
import { RequestContext } from '../../common/request-context.js';
import { Serializer } from '../../database/serializer.js';
import { AgentsRepository } from '../agents/agents.repository.js';
import { AppsService } from '../apps/apps.service.js';
import { FactorsRepository } from '../factors/factors.repository.js';
import { TotpStrategy } from '../factors/totp/totp.strategy.js';
import { WebauthnStrategy } from '../factors/webauthn/webauthn.strategy.js';
import { approvalAttemptsKey, userTotpKey } from '../rate-limit/buckets.js';
import { RateLimitService } from '../rate-limit/rate-limit.service.js';
import { FatigueService } from '../step-ups/fatigue.service.js';
import { StepUpDecisions } from '../step-ups/step-up-decisions.js';
import type { StepUpEntity } from '../step-ups/step-up.entity.js';
import { StepUpsRepository } from '../step-ups/step-ups.repository.js';
import { approvalChallenge } from '../step-ups/transaction.js';
import { txnDataOf } from '../step-ups/txn-token.js';
import { UsersRepository } from '../users/users.repository.js';
import type { ApprovalDto } from './dto/approval.dto.js';

/** API.md: after 5 failed codes the step-up is denied. */
export const MAX_TOTP_ATTEMPTS = 5;
const NONCE_TTL_MS = 5 * 60_000;
const totpAttemptKey = (stepUpId: string) => `approvals:totp:${stepUpId}`;

type Decided = { status: 'approved' | 'denied' };

/** The human side of a step-up: the approval token is the credential, the factor is the proof. */
@Injectable()
export class ApprovalsService {
  constructor(
    private readonly stepUps: StepUpsRepository,
    private readonly decisions: StepUpDecisions,
    private readonly factors: FactorsRepository,
    private readonly webauthn: WebauthnStrategy,
    private readonly totp: TotpStrategy,
    private readonly apps: AppsService,
    private readonly agents: AgentsRepository,
    private readonly users: UsersRepository,
    private readonly clock: Clock,
    private readonly limits: RateLimitService,
    private readonly fatigue: FatigueService,
    private readonly shutdown: ShutdownState,
    private readonly serializer: Serializer,
  ) {}

  /** The step-up behind an approval token (lazily expired); unknown: 404. */
  async resolve(token: string): Promise<StepUpEntity> {
    const s = typeof token === 'string' && token.startsWith(TOKEN_PREFIX.approval) && token.length < 200
      ? await this.stepUps.findByApprovalHash(hashSecret(token))
      : null;
    // A deleted user's requests are gone with them: the link shows nothing any more.
    if (!s || s.reason === 'user_deleted') throw notFound('approval');
    RequestContext.assign({ appId: s.appId, actorType: 'human', actorId: s.userId, userId: s.userId, agentId: s.agentId, model: s.model, taskId: s.taskId });
    return this.decisions.expireIfDue(s);
  }

  /**
   * A step-up of this user, for the signed-in human's dashboard (keyed by step-up, not by approval
   * token; lazily expired). Another user's or app's, or an unknown id: 404.
   */
  async resolveForUser(appId: string, userId: string, id: string): Promise<StepUpEntity> {
    const s = isId('stepUp', id) ? await this.stepUps.find(appId, id) : null;
    if (!s || s.userId !== userId || s.reason === 'user_deleted') throw notFound('step-up');
    return this.decisions.expireIfDue(s);
  }

  async lookup(token: string): Promise<ApprovalDto> {
    return this.view(await this.resolve(token));
  }

  /** Everything the approval page shows of a step-up (the page, `GET /v1/approvals/<token>` and the dashboard). */
  async view(s: StepUpEntity): Promise<ApprovalDto> {
    const [appName, agent, user] = await Promise.all([this.apps.name(s.appId), this.agents.findById(s.agentId), this.users.find(s.appId, s.userId)]);
    const txn = txnDataOf(s);
    return {
      id: s.id,
      status: s.status,
      app: { name: appName },
      agent: { id: s.agentId, name: agent?.name ?? s.agentId, model: s.model },
      user: { displayName: user?.displayName ?? '' },
      action: s.action,
      resource: s.resource,
      details: s.details,
      detailsHash: s.detailsHash,
      bindingMessage: s.bindingMessage,
      bindingCode: s.bindingCode,
      taskId: s.taskId,
      methods: s.methods,
      expiresAt: new Date(s.expiresAt).toISOString(),
      grant: s.grantType === 'sudo' ? { type: 'sudo', scopes: s.grantScopes, duration: s.grantDuration } : { type: 'token' },
      ...(s.reason ? { reason: s.reason } : {}),
      // TAC: action, resource and details above are the app's signed description; its reason with them.
      ...(txn ? { transactionChallenge: { describedBy: 'app' as const, issuer: txn.audience, txn: txn.txn, reason: txn.reason } } : {}),
    };
  }

  /** Streams this step-up's status: now, on every change (any instance), and on expiry; ends once decided. */
  async watch(start: StepUpEntity, sink: { write(c: string): void; end(): void; onClose(fn: () => void): void }): Promise<void> {
    let closed = false;
    let last = '';
    sink.onClose(() => (closed = true));
    const offShutdown = this.shutdown.onClosing(() => (closed = true));
    try {
      while (!closed) {
        const s = await this.decisions.expireIfDue((await this.stepUps.find(start.appId, start.id)) ?? start);
        if (s.status !== last) {
          last = s.status;
          sink.write(`event: status\ndata: ${JSON.stringify({ status: s.status, ...(s.reason ? { reason: s.reason } : {}) })}\n\n`);
        }
        if (s.status !== 'pending') break;
        await this.decisions.waitForChange(s.id, Math.min(15_000, Math.max(50, s.expiresAt - this.clock.now() + 50)));
        if (!closed) sink.write(': heartbeat\n\n');
      }
    } finally {
      offShutdown();
      sink.end();
    }
  }

  webauthnOptions(token: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return this.resolve(token).then((s) => this.webauthnOptionsFor(s));
  }

  webauthnVerify(token: string, response: Record<string, unknown>): Promise<Decided> {
    return this.resolve(token).then((s) => this.webauthnVerifyFor(s, response));
  }

  totpApprove(token: string, code: string): Promise<Decided> {
    return this.resolve(token).then((s) => this.totpApproveFor(s, code));
  }

  deny(token: string, reason?: string): Promise<Decided> {
    return this.resolve(token).then((s) => this.denyFor(s, reason));
  }

  /*
   * The ceremonies, keyed by step-up: the approval link (above) and the signed-in human's dashboard
   * (me module) decide through these same methods, with the same rules, limits, errors and events.
   */

  async webauthnOptionsFor(resolved: StepUpEntity): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const s = this.pendingOrThrow(resolved, 'webauthn');
    const credentials = await this.webauthn.credentials(s.appId, s.userId);
    if (credentials.length === 0) throw new AppError('no_enrolled_factor', 'the user has no passkey');
    const nonce = randomBytes(16);
    const timeout = Math.min(NONCE_TTL_MS, s.expiresAt - this.clock.now());
    const options = await this.webauthn.authenticationOptions(credentials, approvalChallenge(nonce, s), timeout);
    await this.stepUps.setNonce(s, nonce.toString('base64url'), this.clock.now() + timeout);
    return options;
  }

  async webauthnVerifyFor(resolved: StepUpEntity, response: Record<string, unknown>): Promise<Decided> {
    const s = this.pendingOrThrow(resolved, 'webauthn');
    await this.limits.consume('approvalAttempts', approvalAttemptsKey(s.id));
    // One verify attempt per options call: the nonce is cleared whatever the outcome.
    const nonce = await this.stepUps.takeNonce(s, this.clock.now());
    if (!nonce) throw new AppError('webauthn_verification_failed', 'the passkey response could not be verified', { logDetail: 'no or reused challenge' });
    // The expected challenge is recomputed from the stored row: an edited row cannot be approved.
    const expectedChallenge = approvalChallenge(Buffer.from(nonce, 'base64url'), s).toString('base64url');
    const { credential, newCounter } = await this.webauthn.verifyAssertion({
      response: response as unknown as AuthenticationResponseJSON,
      expectedChallenge,
      appOrigins: (await this.apps.findOrThrow(s.appId)).origins,
      credentials: await this.webauthn.credentials(s.appId, s.userId),
    });
    const outcome = await this.stepUps.ds.transaction(async (m) => {
      if (!(await this.webauthn.advanceCounter(m, credential, newCounter))) return 'replayed' as const;
      if (!(await this.decisions.decideIn(m, s, 'approved', { method: 'webauthn', amr: [...this.webauthn.amr] }))) return 'not_pending' as const;
      await this.factors.touch(m, s.appId, credential.factorId, this.clock.now());
      return 'approved' as const;
    });
    if (outcome === 'replayed') throw new AppError('webauthn_verification_failed', 'the passkey response could not be verified', { logDetail: 'counter did not advance' });
    if (outcome === 'not_pending') throw await this.notPendingError(s);
    await this.decisions.changed(s.id);
    return { status: 'approved' };
  }

  async totpApproveFor(resolved: StepUpEntity, code: string): Promise<Decided> {
    const s = this.pendingOrThrow(resolved, 'totp');
    // Rate-limit before verifying: per approval and account-wide for the user.
    await this.limits.consume('approvalAttempts', approvalAttemptsKey(s.id));
    await this.limits.consume('userTotp', userTotpKey(s.appId, s.userId));
    const totps = (await this.factors.active(s.appId, s.userId)).filter((f) => f.type === 'totp');
    if (totps.length === 0) throw new AppError('no_enrolled_factor', 'the user has no authenticator app');
    // One code at a time per step-up, on every database and instance: each attempt sees the
    // committed count and status, so at most MAX_TOTP_ATTEMPTS wrong codes are ever evaluated and
    // a step-up denied for them cannot be approved by a code that raced with them (API.md v1.1).
    const outcome = await this.serializer.run(totpAttemptKey(s.id), async (m) => {
      const fresh = await this.stepUps.find(s.appId, s.id, m);
      if (!fresh || fresh.status !== 'pending' || fresh.expiresAt <= this.clock.now() || fresh.totpFailures >= MAX_TOTP_ATTEMPTS) return { kind: 'not_pending' as const };
      for (const factor of totps) {
        if ((await this.totp.consumeCode(m, s.appId, factor.id, code)) === null) continue;
        if (!(await this.decisions.decideIn(m, fresh, 'approved', { method: 'totp', amr: [...this.totp.amr] }))) return { kind: 'not_pending' as const };
        await this.factors.touch(m, s.appId, factor.id, this.clock.now());
        return { kind: 'approved' as const };
      }
      const failures = (await this.stepUps.addTotpFailure(m, fresh)) ?? MAX_TOTP_ATTEMPTS;
      const remaining = Math.max(0, MAX_TOTP_ATTEMPTS - failures);
      if (remaining === 0) await this.decisions.decideIn(m, fresh, 'denied', { reason: 'too_many_attempts' });
      return { kind: 'invalid' as const, remaining };
    });
    if (outcome.kind === 'not_pending') throw await this.notPendingError(s);
    if (outcome.kind === 'approved' || outcome.remaining === 0) await this.decisions.changed(s.id);
    if (outcome.kind === 'approved') return { status: 'approved' };
    throw new AppError('invalid_code', outcome.remaining === 0 ? 'too many wrong codes: the request was denied' : 'the code is not valid', { extensions: { attemptsRemaining: outcome.remaining } });
  }

  async denyFor(resolved: StepUpEntity, reason?: string): Promise<Decided> {
    const s = this.pendingOrThrow(resolved);
    if (!(await this.decisions.decide(s, 'denied', { reason: reason ? `denied_by_user: ${reason}`.slice(0, 64) : 'denied_by_user' }))) throw await this.notPendingError(s);
    await this.fatigue.afterDenial(s);
    return { status: 'denied' };
  }

  private pendingOrThrow(s: StepUpEntity, method?: 'webauthn' | 'totp'): StepUpEntity {
    if (s.status === 'expired') throw new AppError('expired', 'the request expired');
    if (s.status !== 'pending') throw new AppError('not_pending', `the request is already ${s.status}`);
    if (method && !s.methods.includes(method)) throw new AppError('validation_failed', `this request cannot be approved with ${method}`);
    return s;
  }

  private async notPendingError(s: StepUpEntity): Promise<AppError> {
    const fresh = await this.decisions.expireIfDue((await this.stepUps.find(s.appId, s.id)) ?? s);
    return fresh.status === 'expired' ? new AppError('expired', 'the request expired') : new AppError('not_pending', `the request is already ${fresh.status}`);
  }
}
