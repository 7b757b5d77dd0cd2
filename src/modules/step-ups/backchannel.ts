import { Injectable, type OnModuleInit } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { canonicalJson } from '../../common/canonical-json.js';
import { Clock } from '../../common/clock.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { hashSecret, sha256 } from '../../common/crypto/tokens.js';
import type { AgentEntity } from '../agents/agent.entity.js';
import { OutboxService } from '../events/outbox.service.js';
import type { CreateStepUpRequestDto } from './dto/create-step-up-request.dto.js';
import type { StepUpDto } from './dto/step-up.dto.js';
import { Requesters } from './requester.js';
import { StepUpDecisions } from './step-up-decisions.js';
import type { BackchannelChannel, StepUpEntity, StepUpStatus } from './step-up.entity.js';
import { StepUpsRepository } from './step-ups.repository.js';
import { POLL_INTERVAL_S, StepUpsService } from './step-ups.service.js';

export type { BackchannelChannel } from './step-up.entity.js';

/** What a backchannel asks for: the fields of `POST /v1/step-ups`, plus the channel's own. */
export interface BackchannelRequest {
  action: string;
  resource?: string;
  details?: Record<string, unknown>;
  /** ≤ 64 characters, shown to the human as written by the agent (CIBA binding_message). */
  bindingMessage?: string;
  /** 60..900 s, default 300 (CIBA requested_expiry). */
  expiresIn?: number;
  /** Default `{ type: 'token' }`; `sudo` with scopes (duration 60..900, default 300). TAC adds its own type. */
  grant?: CreateStepUpRequestDto['grant'];
  methods?: CreateStepUpRequestDto['methods'];
  /**
   * The channel's own data, stored with the step-up and given back by `redeem` (CIBA: `openid`,
   * `authorization_details`; TAC: `txn`, audience, ...). It is part of what makes two requests
   * identical (dedupe), so keep it to what the request says.
   */
  data?: Record<string, unknown>;
  /**
   * CIBA ping mode: the client's bearer token and the endpoint (already validated against the
   * SSRF rules) to POST `{ auth_req_id }` to once the step-up is decided, from the outbox.
   */
  notification?: { endpoint: string; token: string };
}

export interface BackchannelCreated {
  /** The handle the client polls with (CIBA `auth_req_id`): 256 random bits, stored as SHA-256 (and encrypted). */
  handle: string;
  stepUpId: string;
  /** Seconds until the step-up expires. */
  expiresIn: number;
  /** Minimum polling interval, seconds. */
  interval: number;
  /** false: an identical request was still pending, and its handle is returned (no new push). */
  created: boolean;
}

/** CIBA Core §11 / RFC 8628 §3.5 outcomes of a poll that hands nothing out. */
export type BackchannelPollError = 'authorization_pending' | 'slow_down' | 'access_denied' | 'expired_token' | 'invalid_grant';

export class BackchannelPollRefused extends Error {
  constructor(
    readonly code: BackchannelPollError,
    readonly description: string,
  ) {
    super(description);
    this.name = 'BackchannelPollRefused';
  }
}

/** A redeemed backchannel step-up: the grant, handed out exactly once. */
export interface BackchannelRedeemed {
  stepUp: StepUpEntity;
  /** `mfaProxyToken` (grant token) or `sudoToken` + `sudoExpiresAt` (grant sudo); TAC adds its own. */
  grant: Partial<StepUpDto>;
  /** The request's `data` as stored. */
  data: Record<string, unknown>;
}

/** Extra inputs of a poll for the hand-out (TAC: the poll's DPoP key for `cnf.jkt`). */
export interface RedeemOptions {
  jkt?: string | null;
  /** What the answer needs besides the grant and can fail (an ID token to sign): see StepUpsService.handOut. */
  beforeHandOut?: (s: StepUpEntity) => Promise<void> | void;
}

const HANDLE_BYTES = 32;
const handleAad = (id: string) => ({ table: 'step_ups', column: 'backchannel_enc', id });
const notificationAad = (id: string) => ({ table: 'step_ups', column: 'notification_token_enc', id });
export const PING_ENDPOINT_KEY = 'notificationEndpoint';

/**
 * The shared backchannel API of the step-ups module (issue 13): CIBA (`ciba` module) and the
 * Transaction Authorization Challenge (`txn-authorization` module) create ordinary step-ups here
 * and the client polls them with a handle instead of `GET /v1/step-ups/:id`.
 *
 * - `create(agent, channel, request)`: the same creation path as `POST /v1/step-ups`
 *   (StepUpsService.createFor: authority = the agent's permission boundaries, cooldown, dedupe,
 *   pending cap, push budgets, audit, `step_up.created` with the approval URL to the app). The step-up's
 *   initiator is the channel, so neither the agent's nor the app's `/v1/step-ups/:id` shows it. Throws
 *   AppError as `POST /v1/step-ups` does (`action_not_permitted`, `too_many_pending`, ...): the
 *   channel maps them to its own error format.
 * - `redeem(appId, agentId, channel, handle, now, options)`: one poll. Throws BackchannelPollRefused
 *   (`authorization_pending`, `slow_down` when polled faster than `interval`, `access_denied`,
 *   `expired_token`, `invalid_grant` for an unknown handle, another client's, another channel's, or
 *   one already redeemed); on approval returns the grant exactly once (StepUpsService.handOut: the
 *   token_delivered_at guard, one conditional write across instances).
 *
 * Ping mode: a request with `notification` gets, in the transaction that decides the step-up
 * (whatever the decision), an outbox row that POSTs `{ auth_req_id }` with the client's bearer token
 * (OutboxService.addPing, delivered by PingDispatcher: retried, SSRF-guarded).
 */
@Injectable()
export class StepUpsBackchannel implements OnModuleInit {
  constructor(
    private readonly stepUps: StepUpsService,
    private readonly requesters: Requesters,
    private readonly repo: StepUpsRepository,
    private readonly decisions: StepUpDecisions,
    private readonly outbox: OutboxService,
    private readonly cipher: Cipher,
    private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    this.decisions.onDecidedIn((m, s, to) => this.pingIn(m, s, to));
  }

  async create(agent: AgentEntity, channel: BackchannelChannel, request: BackchannelRequest): Promise<BackchannelCreated> {
    const data = { ...(request.data ?? {}), ...(request.notification ? { [PING_ENDPOINT_KEY]: request.notification.endpoint } : {}) };
    // Two requests are identical (dedupe) only with the same channel data and notification token.
    const binding = sha256(canonicalJson({ data, ping: request.notification ? hashSecret(request.notification.token) : null })).toString('base64url');
    const r = this.requesters.backchannel(agent, channel, binding);
    const dto: CreateStepUpRequestDto = {
      action: request.action, resource: request.resource, details: request.details, bindingMessage: request.bindingMessage,
      expiresIn: request.expiresIn, grant: request.grant, methods: request.methods,
    };
    let handle = '';
    const { status, stepUp } = await this.stepUps.createFor(r, dto, undefined, (s) => {
      handle = randomBytes(HANDLE_BYTES).toString('base64url');
      s.backchannelHash = hashSecret(handle);
      s.backchannelEnc = this.cipher.encrypt(handle, handleAad(s.id));
      s.backchannelData = data;
      s.notificationTokenEnc = request.notification ? this.cipher.encrypt(request.notification.token, notificationAad(s.id)) : null;
    });
    // An identical pending request: the same step-up, and so the same handle.
    if (status === 200) handle = this.handleOf(stepUp);
    return { handle, stepUpId: stepUp.id, expiresIn: Math.max(0, Math.ceil((stepUp.expiresAt - this.clock.now()) / 1000)), interval: POLL_INTERVAL_S, created: status === 201 };
  }

  async redeem(appId: string, agentId: string, channel: BackchannelChannel, handle: string, now: number = this.clock.now(), options: RedeemOptions = {}): Promise<BackchannelRedeemed> {
    const found = handle.length > 0 && handle.length <= 128 ? await this.repo.findByBackchannelHash(appId, hashSecret(handle)) : null;
    // Bound to the client and the channel: another client's handle is as unknown as a made-up one (CIBA §11).
    if (!found || found.agentId !== agentId || found.initiator !== channel) throw new BackchannelPollRefused('invalid_grant', 'unknown auth_req_id');
    const s = await this.decisions.expireIfDue(found);
    switch (s.status) {
      case 'pending':
        // RFC 8628 §3.5 / CIBA §11: polling faster than `interval` is slow_down (one conditional write, every instance).
        if (!(await this.repo.markPolled(s, now, POLL_INTERVAL_S * 1000))) throw new BackchannelPollRefused('slow_down', `poll at most every ${POLL_INTERVAL_S} s`);
        throw new BackchannelPollRefused('authorization_pending', 'the user has not decided yet');
      case 'denied':
      case 'cancelled':
        throw new BackchannelPollRefused('access_denied', s.status === 'denied' ? 'the user denied the request' : 'the request was cancelled');
      case 'expired':
        throw new BackchannelPollRefused('expired_token', 'the request expired before the user decided');
    }
    const grant = await this.stepUps.handOut(s, options);
    if (grant.mfaProxyToken || grant.sudoToken) return { stepUp: s, grant, data: s.backchannelData ?? {} };
    // Single use (CIBA §11): a handle whose grant was handed out is spent.
    if (grant.tokenIssued === true) throw new BackchannelPollRefused('invalid_grant', 'the auth_req_id was already redeemed');
    if (grant.reason === 'expired') throw new BackchannelPollRefused('expired_token', 'the approval was not collected before the request expired');
    // Voided: the agent's boundaries were narrowed (or the agent stopped) since the approval.
    throw new BackchannelPollRefused('access_denied', 'the approval no longer lies within the agent’s permission boundaries');
  }

  /** The handle of a backchannel step-up (an identical request's answer, a ping's body). */
  handleOf(s: StepUpEntity): string {
    return this.cipher.decryptString(s.backchannelEnc!, handleAad(s.id));
  }

  /** Ping mode (CIBA §10.2): the notification is an outbox row of the deciding transaction. */
  private async pingIn(m: EntityManager, s: StepUpEntity, _to: Exclude<StepUpStatus, 'pending'>): Promise<void> {
    const endpoint = s.backchannelData?.[PING_ENDPOINT_KEY];
    if (!s.notificationTokenEnc || !s.backchannelEnc || typeof endpoint !== 'string') return;
    const token = this.cipher.decryptString(s.notificationTokenEnc, notificationAad(s.id));
    await this.outbox.addPing(m, s.appId, { endpoint, bearer: token, body: { auth_req_id: this.handleOf(s) }, agentId: s.agentId, stepUpId: s.id });
  }
}
