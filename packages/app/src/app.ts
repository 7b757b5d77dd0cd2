import canonicalize from 'canonicalize';
import { createRemoteJWKSet, customFetch, decodeJwt, errors as joseErrors, importJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { randomBytes, randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { DPOP_ALGS, dpopProblem, headerOf, ReplayCache } from './dpop.js';
import { AgentAuthError, ApprovalRequiredError, errorFrom } from './errors.js';
import type { ActionDescriptor, AgentSession, Approved, ApprovalSpec, IncomingRequest, MfaProxyEvent, SudoGrant, SudoSpec, VerifiedApproval, VerifyInput, VerifyResult } from './types.js';

export interface MfaProxyAppOptions {
  /** The service's issuer URL. */
  issuer: string;
  /** The app's id (`app_...`): the `aud` of its agents' tokens. */
  appId: string;
  /** An API key of the app. */
  apiKey: string;
  /** The app's resource identifier, as registered (`resource`): `iss` of its challenges, `aud` of transaction tokens. */
  resource?: string;
  /** The private key that signs transaction challenges; its public half is registered as the app's `challengeJwks`. */
  challengeKey?: JWK;
  /** The app's Standard Webhooks secret (`whsec_...`). */
  webhookSecret?: string;
  /** Where the app serves its challenge JWKS (RFC 9728 metadata); default `<resource origin>/.well-known/txn-challenge-jwks.json`. */
  challengeJwksUri?: string;
  /**
   * The public origin agents call the app at (e.g. `https://api.example.com`): the origin of the
   * DPoP `htu` the app expects. Default: the origin of `resource`. The `Host` and `X-Forwarded-*`
   * headers are never used; without `publicUrl` or `resource` a DPoP-bound token is refused.
   */
  publicUrl?: string;
  /**
   * Ask the service (`POST /oauth/introspect`) whether each agent token is still active: a revoked
   * token or a suspended/revoked agent is refused at once. Without it, a revoked token works
   * until its `exp`, and a suspended agent until the 30 s agent cache expires (or the app's
   * webhook delivers `agent.revoked` to `webhooks.verify`, which drops the cache entry).
   */
  introspect?: boolean;
  /**
   * `webhooks.verify` remembers each verified `webhook-id` for the timestamp tolerance (5 min) and
   * throws for a second delivery with the same id (a replay, or the service's retry of a delivery
   * the app already verified). Off by default. One memory per MfaProxyApp object.
   */
  rejectReplayedWebhooks?: boolean;
  fetch?: typeof fetch;
}

interface AgentRecord {
  id: string;
  userId: string;
  model: string;
  status: string;
  permissionBoundaries: string[];
}

const AGENT_TOKEN_ALGS = ['ES256', 'EdDSA'];
/** How long an agent's status and boundaries are taken from memory before they are read again. */
const AGENT_CACHE_MS = 30_000;
/** A challenge's life (the draft leaves it to the resource; the service takes at most 600 s). */
const CHALLENGE_TTL_S = 300;
const LONG_POLL_S = 30;
/** `acr` of the service's sudo tokens: the human approved with a second factor. */
const SUDO_ACR = 'mfa';
/** Standard Webhooks' timestamp tolerance: a delivery older (or newer) than this is refused anyway. */
const WEBHOOK_TOLERANCE_MS = 5 * 60_000;
/** Webhook events after which the agent's cached status is read again. */
const AGENT_STATUS_EVENTS = new Set(['agent.revoked', 'agent.suspended', 'agent.updated', 'agent.resumed']);

/**
 * The app's side of mfa-proxy: verifies single-use approvals, authenticates agents locally
 * against the service's JWKS, signs transaction challenges, and checks webhooks.
 */
export class MfaProxyApp {
  readonly issuer: string;
  readonly appId: string;
  readonly resource: string | undefined;
  readonly webhooks: { verify(rawBody: string | Buffer, headers: Record<string, string | string[] | undefined> | Headers): MfaProxyEvent };
  private readonly fetchFn: typeof fetch;
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  private readonly agents = new Map<string, { record: Promise<AgentRecord | null>; at: number }>();
  private readonly replay = new ReplayCache();
  /** The verified token behind each session authenticateAgent returned (for requireSudo behind agentAuth). */
  private readonly sessionTokens = new WeakMap<AgentSession, { token: string; claims: JWTPayload; transaction?: true }>();
  private readonly seenWebhooks = new Map<string, number>();

  constructor(private readonly options: MfaProxyAppOptions) {
    this.issuer = options.issuer.replace(/\/+$/, '');
    this.appId = options.appId;
    this.resource = options.resource;
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    const secret = options.webhookSecret;
    this.webhooks = {
      verify: (rawBody, headers) => {
        if (!secret) throw new TypeError('MfaProxyApp needs webhookSecret to verify webhooks');
        const h: Record<string, string> = {};
        for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) h[name] = headerOf(headers, name) ?? '';
        // Standard Webhooks: HMAC over id.timestamp.body, timestamps within 5 min; throws on failure
        const event = new Webhook(secret).verify(typeof rawBody === 'string' ? rawBody : rawBody.toString('utf8'), h) as MfaProxyEvent;
        if (options.rejectReplayedWebhooks) {
          const now = Date.now();
          for (const [id, until] of this.seenWebhooks) if (until < now) this.seenWebhooks.delete(id);
          if (this.seenWebhooks.has(h['webhook-id']!)) throw new Error(`webhook ${h['webhook-id']} was delivered before`);
          // remembered until its timestamp leaves the tolerance window, after which verify refuses it anyway
          this.seenWebhooks.set(h['webhook-id']!, Number(h['webhook-timestamp']) * 1000 + WEBHOOK_TOLERANCE_MS);
        }
        const agentId = event.data?.agentId;
        if (AGENT_STATUS_EVENTS.has(event.type) && typeof agentId === 'string') this.agents.delete(agentId);
        return event;
      },
    };
  }

  // ---- the service's API, with the app key ----

  private async api(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    return this.fetchFn(`${this.issuer}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.options.apiKey}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  }

  /**
   * Verifies and consumes a single-use token: an MFA-proxy token for exactly this action, resource
   * and details (and agent, when given), or a transaction token with its `txn`.
   */
  async verify(input: VerifyInput): Promise<VerifyResult> {
    const res = await this.api('POST', '/v1/mfa-proxy-tokens/verify', input);
    if (!res.ok) throw await errorFrom(res, 'verify failed');
    return (await res.json()) as VerifyResult;
  }

  /** An app-initiated step-up (API.md v1.1) on behalf of `agentId`; the response always has `approvalUrl`. */
  async createStepUp(req: ActionDescriptor & { agentId: string; bindingMessage?: string; expiresIn?: number; methods?: string[] }, opts: { idempotencyKey?: string } = {}) {
    const res = await this.fetchFn(`${this.issuer}/v1/step-ups`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.options.apiKey}`, 'content-type': 'application/json', accept: 'application/json', ...(opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {}) },
      body: JSON.stringify(req),
    });
    if (res.status !== 201 && res.status !== 200) throw await errorFrom(res, 'step-up request failed');
    return (await res.json()) as { id: string; status: string; bindingCode: string; approvalUrl: string; expiresAt: string; interval: number };
  }

  /** Long-polls an app-initiated step-up until it is decided; the approval's token comes to the app only, once. */
  async waitForStepUp(id: string, signal?: AbortSignal): Promise<{ id: string; status: string; reason?: string; mfaProxyToken?: string; tokenIssued?: boolean }> {
    for (;;) {
      signal?.throwIfAborted();
      const res = await this.api('GET', `/v1/step-ups/${encodeURIComponent(id)}?wait=${LONG_POLL_S}`, undefined, signal);
      if (res.status === 429) {
        await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after') ?? 5) * 1000));
        continue;
      }
      if (!res.ok) throw await errorFrom(res, 'step-up poll failed');
      const s = (await res.json()) as { id: string; status: string; reason?: string; mfaProxyToken?: string };
      if (s.status !== 'pending') return s;
    }
  }

  async cancelStepUp(id: string): Promise<void> {
    const res = await this.api('DELETE', `/v1/step-ups/${encodeURIComponent(id)}`);
    if (!res.ok && res.status !== 409) throw await errorFrom(res, 'cancel failed');
  }

  // ---- agents ----

  private async jwksUri(): Promise<URL> {
    try {
      const res = await this.fetchFn(`${this.issuer}/.well-known/oauth-authorization-server`, { headers: { accept: 'application/json' } });
      if (res.ok) {
        const meta = (await res.json()) as { jwks_uri?: unknown };
        if (typeof meta.jwks_uri === 'string') return new URL(meta.jwks_uri);
      }
    } catch {
      // the fixed path below
    }
    return new URL(`${this.issuer}/.well-known/jwks.json`);
  }

  /** The service's signing keys, fetched once and cached by jose (refetched for an unknown `kid`). */
  private async keySet(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    const fetchFn = this.fetchFn;
    this.jwks ??= createRemoteJWKSet(await this.jwksUri(), { [customFetch]: (url: string, init: RequestInit) => fetchFn(url, init) });
    return this.jwks;
  }

  private agentRecord(agentId: string): Promise<AgentRecord | null> {
    const hit = this.agents.get(agentId);
    if (hit && Date.now() - hit.at < AGENT_CACHE_MS) return hit.record;
    const record = this.api('GET', `/v1/agents/${encodeURIComponent(agentId)}`).then(async (res) => {
      if (res.status === 404) return null;
      if (!res.ok) throw await errorFrom(res, 'agent lookup failed');
      return (await res.json()) as AgentRecord;
    });
    record.catch(() => this.agents.delete(agentId));
    this.agents.set(agentId, { record, at: Date.now() });
    return record;
  }

  /** The origin agents call the app at: `publicUrl`, else `resource`'s; never a request header. */
  get publicOrigin(): string | undefined {
    const u = this.options.publicUrl ?? this.resource;
    return u ? new URL(u).origin : undefined;
  }

  /**
   * The URL a DPoP proof must name (`htu`): the configured public origin (`publicUrl` or
   * `resource`) with the request's path and query. `url` may be the request's path or an absolute
   * URL whose origin is replaced; with no public origin configured only an absolute URL the
   * caller vouches for is taken as it is.
   */
  expectedUrl(url: string | undefined): string {
    if (!url) throw new TypeError('authenticateAgent needs the request url for a DPoP-bound token');
    const origin = this.publicOrigin;
    if (origin) {
      const u = new URL(url, origin);
      return `${origin}${u.pathname}${u.search}`;
    }
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new TypeError('MfaProxyApp needs publicUrl or resource to check DPoP proofs (the Host header is not trusted)');
    return url;
  }

  private bearerChallenge(error?: string, description?: string): string {
    return `Bearer realm="${this.appId}"${error ? `, error="${error}"` : ''}${description ? `, error_description="${description}"` : ''}, DPoP algs="${DPOP_ALGS.join(' ')}"`;
  }

  /** RFC 7662 introspection with the app key: is the token still active at the service? */
  private async active(token: string): Promise<boolean> {
    const res = await this.fetchFn(`${this.issuer}/oauth/introspect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.options.apiKey}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ token }).toString(),
    });
    if (!res.ok) throw await errorFrom(res, 'introspection failed');
    return ((await res.json()) as { active?: unknown }).active === true;
  }

  /**
   * Authenticates an agent's request locally: the token is verified against the service's JWKS
   * (RFC 9068 `typ: at+jwt`, `iss`, `aud` = this app, `exp`), with its DPoP proof when it is bound
   * (`cnf.jkt`, RFC 9449 §7; `htu` = `expectedUrl(url)`); the agent's status and boundaries come
   * from a 30 s cache (or introspection, with the `introspect` option).
   * With `transactionToken: true` it authenticates a transaction token instead (aud = the app's
   * `resource`, with `txn`): the session of its agent, with no scopes, which only requireApproval
   * (and requireSudo never) accepts as an approval.
   * Throws AgentAuthError (401 with `wwwAuthenticate`).
   */
  async authenticateAgent(authorization: string | undefined | null, req: { method?: string; url?: string; dpop?: string | string[] | null; transactionToken?: boolean } = {}): Promise<AgentSession> {
    const refuse = (description: string, error: 'invalid_token' | 'invalid_dpop_proof' | 'invalid_request' = 'invalid_token') =>
      new AgentAuthError(description, error === 'invalid_dpop_proof' ? `DPoP error="invalid_dpop_proof", error_description="${description}", algs="${DPOP_ALGS.join(' ')}"` : this.bearerChallenge(error, description), error);
    const m = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*)$/i.exec((authorization ?? '').trim());
    // RFC 6750 §3.1: no error code when the request carried no credential
    if (!authorization) throw new AgentAuthError('no agent token', this.bearerChallenge());
    if (!m) throw refuse('malformed Authorization header', 'invalid_request');
    const scheme = m[1]!.toLowerCase();
    const token = m[2]!;
    const transaction = req.transactionToken === true;
    if (transaction && !this.resource) throw refuse('the token is not a valid agent token of this app');
    const payload = await this.verifyServiceJwt(token, transaction ? this.resource! : this.appId).catch((e: unknown) => {
      throw refuse(e instanceof joseErrors.JWTExpired ? 'the token has expired' : 'the token is not a valid agent token of this app');
    });
    // RFC 8693 act: the agent acting for the user; a transaction token is not an agent token (and the other way round)
    const act = payload.act as { sub?: unknown } | undefined;
    if (typeof payload.client_id !== 'string' || act?.sub !== payload.client_id || typeof payload.sub !== 'string' || (payload.txn !== undefined) !== transaction) throw refuse('the token is not a valid agent token of this app');
    const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
    if (typeof jkt === 'string') {
      // RFC 9449 §7.1: a bound token is presented with the DPoP scheme and a proof of its key
      if (scheme !== 'dpop') throw refuse('a DPoP-bound token must be sent with the DPoP scheme', 'invalid_token');
      const problem = await dpopProblem(firstOf(req.dpop), { method: req.method ?? 'GET', url: this.expectedUrl(req.url), accessToken: token, jkt }, this.replay);
      if (problem) throw refuse(problem, 'invalid_dpop_proof');
    } else if (scheme === 'dpop') {
      throw refuse('the token is not DPoP-bound: send it with the Bearer scheme');
    }
    const agent = await this.agentRecord(payload.client_id);
    // a suspended or revoked agent (or one of another user) is refused at once, token or not
    if (!agent || agent.status !== 'active' || agent.userId !== payload.sub) throw refuse('the agent is not active');
    // a revoked token (or an agent suspended since it was cached) only the service knows of
    if (this.options.introspect && !(await this.active(token))) throw refuse('the token is not active');
    const session: AgentSession = {
      user: { id: payload.sub },
      expires: new Date((payload.exp ?? 0) * 1000).toISOString(),
      isAgent: true,
      agentMetadata: {
        agentId: payload.client_id,
        model: typeof payload.model === 'string' ? payload.model : agent.model,
        parentId: payload.sub,
        permissionBoundaries: agent.permissionBoundaries,
        scopes: !transaction && typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
        taskId: typeof payload.task_id === 'string' ? payload.task_id : null,
      },
    };
    this.sessionTokens.set(session, { token, claims: payload, ...(transaction ? { transaction: true as const } : {}) });
    return session;
  }

  /** A JWT of the service (RFC 9068 access token) for `audience`, verified against the cached JWKS. */
  private async verifyServiceJwt(token: string, audience: string): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, await this.keySet(), { issuer: this.issuer, audience, typ: 'at+jwt', algorithms: AGENT_TOKEN_ALGS });
    return payload;
  }

  // ---- recent step-up authentication (RFC 9470) ----

  /**
   * The RFC 9470 challenge for an operation that needs a recent sudo grant of `spec.scopes`:
   * `WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="mfa",
   * max_age=<s>, scope="<scopes>"` (the RFC 6750 `scope` tells the agent which grant to ask for).
   */
  stepUpChallenge(spec: SudoSpec, scheme: 'Bearer' | 'DPoP' = 'Bearer'): { status: 401; wwwAuthenticate: string } {
    const description = (spec.reason ?? 'this operation needs a recent approval by the human').replace(/["\\]/g, '');
    return {
      status: 401,
      wwwAuthenticate: `${scheme} error="insufficient_user_authentication", error_description="${description}", acr_values="${SUDO_ACR}", max_age=${Math.floor(spec.maxAge)}, scope="${spec.scopes.join(' ')}"`,
    };
  }

  /**
   * The framework-neutral guard of an operation that needs a recent sudo grant: resolves when the
   * agent's token is a sudo token (`acr: "mfa"`) for every one of `spec.scopes`, the human approved
   * it (`auth_time`) at most `spec.maxAge` seconds ago, and the service still holds the grant
   * (introspection: a grant the human revoked stops at once). Otherwise rejects with
   * ApprovalRequiredError (401 and the RFC 9470 challenge of `stepUpChallenge`); a bad agent
   * credential rejects with AgentAuthError.
   */
  requireSudo(spec: SudoSpec): (request: IncomingRequest) => Promise<SudoGrant> {
    return (request) => this.sudo(spec, request);
  }

  /** `requireSudo` for a spec known only per request. */
  async sudo(spec: SudoSpec, request: IncomingRequest): Promise<SudoGrant> {
    if (!spec.scopes.length || !(spec.maxAge > 0)) throw new TypeError('requireSudo needs scopes and a positive maxAge');
    const authorization = headerOf(request.headers, 'authorization');
    let session = request.agentSession;
    let verified = session ? this.sessionTokens.get(session) : undefined;
    if (!session || !verified) {
      session = await this.authenticateAgent(authorization, { method: request.method, url: request.url, dpop: headerOf(request.headers, 'dpop') });
      verified = this.sessionTokens.get(session)!;
    }
    const { claims, token } = verified;
    if (verified.transaction) throw new AgentAuthError('a transaction token is no sudo token', this.bearerChallenge('invalid_token', 'a transaction token is no sudo token'), 'invalid_token');
    const scheme = verified.claims.cnf ? 'DPoP' : 'Bearer';
    const insufficient = (why: string) => {
      const challenge = this.stepUpChallenge(spec, scheme);
      return new ApprovalRequiredError(why, 401, challenge.wwwAuthenticate, { error: 'insufficient_user_authentication', error_description: spec.reason ?? why, reason: why });
    };
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ') : [];
    if (claims.acr !== SUDO_ACR || typeof claims.auth_time !== 'number') throw insufficient('no_sudo_grant');
    if (Math.floor(Date.now() / 1000) - claims.auth_time > spec.maxAge) throw insufficient('too_old');
    if (!spec.scopes.every((sc) => scopes.includes(sc))) throw insufficient('scope_not_granted');
    // the human may have revoked the grant (dashboard): the service is asked, not only the signature
    if (!(await this.active(token))) throw insufficient('revoked');
    return { session, stepUpId: typeof claims.step_up_id === 'string' ? claims.step_up_id : '', authTime: new Date(claims.auth_time * 1000).toISOString(), scopes };
  }

  // ---- transaction challenges (draft-rosomakho-oauth-txn-challenge-00) ----

  private challengeAlg(): string {
    const k = this.options.challengeKey;
    if (!k) throw new TypeError('MfaProxyApp needs challengeKey (a private JWK) to sign transaction challenges');
    return k.alg ?? (k.kty === 'OKP' ? 'EdDSA' : k.kty === 'RSA' ? 'RS256' : k.crv === 'P-384' ? 'ES384' : 'ES256');
  }

  /** The public keys to register as the app's `challengeJwks` (and to serve at `txn_challenge_jwks_uri`). */
  async challengeJwks(): Promise<{ keys: JWK[] }> {
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = this.options.challengeKey ?? {};
    if (!this.options.challengeKey) return { keys: [] };
    return { keys: [{ ...pub, alg: this.challengeAlg(), use: 'sig' }] };
  }

  /**
   * A signed transaction challenge for one exact operation by `agentId`: the 401 the resource
   * answers (`WWW-Authenticate: Bearer error="transaction_authorization_required", transaction_challenge=...`).
   */
  async transactionChallenge(req: ApprovalSpec & { agentId: string }): Promise<{ status: 401; wwwAuthenticate: string; txn: string }> {
    if (!this.resource) throw new TypeError('MfaProxyApp needs resource (as registered) to sign transaction challenges');
    const alg = this.challengeAlg();
    const key = await importJWK(this.options.challengeKey!, alg);
    const txn = randomBytes(16).toString('base64url');
    const detail = { type: 'mfa_proxy_action', action: req.action, ...(req.resource !== undefined ? { resource: req.resource } : {}), ...(req.details !== undefined ? { details: req.details } : {}) };
    const jws = await new SignJWT({ txn, authorization_details: [detail], reason: req.reason, act: { sub: req.agentId } })
      .setProtectedHeader({ alg, typ: 'txn-authz-challenge+jwt', ...(this.options.challengeKey!.kid ? { kid: this.options.challengeKey!.kid } : {}) })
      .setIssuer(this.resource)
      .setAudience(this.issuer)
      .setIssuedAt()
      .setExpirationTime(`${CHALLENGE_TTL_S}s`)
      .setJti(randomUUID())
      .sign(key);
    return { status: 401, wwwAuthenticate: `Bearer error="transaction_authorization_required", transaction_challenge="${jws}"`, txn };
  }

  /**
   * The framework-neutral guard of one operation: resolves with the consumed approval when the
   * request carries a valid single-use token for exactly `spec` (a transaction token in
   * `Authorization`, or an MFA-proxy token in `X-MFA-Proxy-Token`); otherwise rejects with
   * ApprovalRequiredError: 401 with a transaction challenge when the agent sent
   * `Accept-Txn-Challenge: ?1`, else 403. A bad agent credential rejects with AgentAuthError.
   */
  requireApproval(spec: ApprovalSpec): (request: IncomingRequest) => Promise<Approved> {
    return (request) => this.approve(spec, request);
  }

  /** `requireApproval` for a spec known only per request. */
  async approve(spec: ApprovalSpec, request: IncomingRequest): Promise<Approved> {
    const authorization = headerOf(request.headers, 'authorization');
    const descriptor: ActionDescriptor = { action: spec.action, ...(spec.resource !== undefined ? { resource: spec.resource } : {}), ...(spec.details !== undefined ? { details: spec.details } : {}) };
    let refusal: string | undefined;
    /** The agent this request authenticates as (never an unverified claim). */
    let agentId: string | undefined;

    // The retry of the TAC draft: the transaction token in Authorization.
    const txnToken = transactionTokenOf(authorization);
    if (txnToken) {
      const checked = await this.checkTransactionToken(txnToken.token, txnToken.scheme, descriptor, request);
      if ('approved' in checked) return checked.approved;
      refusal = checked.refusal;
      agentId = checked.agentId;
    } else {
      agentId = request.agentSession?.agentMetadata.agentId;
      if (!agentId) agentId = (await this.authenticateAgent(authorization, { method: request.method, url: request.url, dpop: headerOf(request.headers, 'dpop') })).agentMetadata.agentId;
    }
    if (!agentId) {
      // no live credential of an agent: no approval is taken and no challenge names anyone
      throw new ApprovalRequiredError('no valid agent credential', 401, this.bearerChallenge('invalid_token', 'no valid agent credential'), {
        error: 'invalid_token',
        error_description: 'no valid agent credential',
        ...(refusal ? { reason: refusal } : {}),
      });
    }

    // An MFA-proxy token the agent got from its own step-up for exactly this operation: bound to
    // the authenticated agent (another agent's token is agent_mismatch, and is not spent).
    const mpt = headerOf(request.headers, 'x-mfa-proxy-token');
    if (mpt) {
      const r = await this.verify({ token: mpt, ...descriptor, agentId });
      if (r.valid) return r;
      refusal = r.reason;
    }

    if (headerOf(request.headers, 'accept-txn-challenge')?.trim() !== '?1') {
      throw new ApprovalRequiredError('this operation needs the human’s approval', 403, undefined, {
        error: 'approval_required',
        error_description: 'this operation needs the human’s approval: send Accept-Txn-Challenge: ?1 to receive a transaction challenge, or an MFA-proxy token for it in X-MFA-Proxy-Token',
        ...(refusal ? { reason: refusal } : {}),
      });
    }
    const challenge = await this.transactionChallenge({ ...spec, agentId });
    throw new ApprovalRequiredError('transaction authorization required', 401, challenge.wwwAuthenticate, {
      error: 'transaction_authorization_required',
      error_description: spec.reason,
      ...(refusal ? { reason: refusal } : {}),
    });
  }

  /**
   * A transaction token (aud = this resource, with `txn`) checked locally first, so one for
   * another operation is refused without being spent; then consumed at the service, once.
   * `agentId` comes back only when the token authenticates its agent (verified, proof of its key
   * when bound, not refused by the service) but is for another operation.
   */
  private async checkTransactionToken(token: string, scheme: string, descriptor: ActionDescriptor, request: IncomingRequest): Promise<{ approved: Approved } | { refusal: string; agentId?: string }> {
    if (!this.resource) return { refusal: 'malformed' };
    let payload: JWTPayload;
    try {
      payload = await this.verifyServiceJwt(token, this.resource);
    } catch (e) {
      return { refusal: e instanceof joseErrors.JWTExpired ? 'expired' : 'invalid_signature' };
    }
    const act = (payload.act as { sub?: unknown } | undefined)?.sub;
    if (typeof act !== 'string' || payload.txn === undefined) return { refusal: 'malformed' };
    const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
    // agentAuth (or AgentAuthGuard) already checked this token and its proof: a proof is not checked twice (its jti is spent)
    const known = request.agentSession ? this.sessionTokens.get(request.agentSession) : undefined;
    if (!(known?.transaction && known.token === token) && typeof jkt === 'string') {
      if (scheme !== 'dpop') return { refusal: 'invalid_dpop_proof' };
      const problem = await dpopProblem(headerOf(request.headers, 'dpop'), { method: request.method, url: this.expectedUrl(request.url), accessToken: token, jkt }, this.replay);
      if (problem) return { refusal: 'invalid_dpop_proof' };
    }
    const agentId = act;
    const detail = Array.isArray(payload.authorization_details) ? (payload.authorization_details[0] as Record<string, unknown>) : undefined;
    // the approval is for exactly this operation: action, resource and details (RFC 8785 canonical form)
    if (!detail || detail.action !== descriptor.action) return { refusal: 'action_mismatch', agentId };
    if ((detail.resource ?? undefined) !== (descriptor.resource ?? undefined)) return { refusal: 'resource_mismatch', agentId };
    if (canonicalize(detail.details ?? null) !== canonicalize(descriptor.details ?? null)) return { refusal: 'details_mismatch', agentId };
    const r = await this.verify({ token, txn: String(payload.txn) });
    // spent, revoked or expired at the service: it authenticates no one any more
    if (!r.valid) return { refusal: r.reason };
    return { approved: r as VerifiedApproval };
  }

  /** RFC 9728 metadata of the app as a protected resource, with its transaction challenge keys. */
  protectedResourceMetadata(): Record<string, unknown> {
    const resource = this.resource;
    const jwksUri = this.options.challengeJwksUri ?? (resource ? new URL('/.well-known/txn-challenge-jwks.json', resource).href : undefined);
    return {
      ...(resource ? { resource } : {}),
      authorization_servers: [this.issuer],
      bearer_methods_supported: ['header'],
      dpop_signing_alg_values_supported: DPOP_ALGS,
      ...(this.options.challengeKey ? { txn_challenge_jwks_uri: jwksUri, txn_challenge_signing_alg_values_supported: [this.challengeAlg()] } : {}),
    };
  }
}

function firstOf(v: string | string[] | null | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : (v ?? undefined);
}

/** The token in Authorization when it is a transaction token (it carries `txn`), read without verifying. */
export function transactionTokenOf(authorization: string | undefined | null): { scheme: string; token: string } | undefined {
  const m = /^(Bearer|DPoP) +(\S+)$/i.exec((authorization ?? '').trim());
  if (!m) return undefined;
  try {
    return decodeJwt(m[2]!).txn !== undefined ? { scheme: m[1]!.toLowerCase(), token: m[2]! } : undefined;
  } catch {
    return undefined;
  }
}
