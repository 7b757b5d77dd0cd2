import { decodeJwt, importJWK, SignJWT, type JWK } from 'jose';
import { randomUUID } from 'node:crypto';
import { algOf, DpopKey } from './dpop.js';
import { discover, trimIssuer, type Endpoints } from './endpoints.js';
import { errorFrom, MfaProxyError, StepUpCancelledError, StepUpDeniedError, StepUpExpiredError } from './errors.js';
import { findChallenge } from './www-authenticate.js';

export interface MfaProxyAgentOptions {
  /** The service's issuer URL, e.g. `https://mfa.example.com`. */
  issuer: string;
  /** The agent id (`agt_...`). */
  clientId: string;
  /** `client_secret_basic` authentication. */
  clientSecret?: string;
  /** `private_key_jwt` authentication (RFC 7523) with this private JWK, registered as the agent's `jwks`. */
  privateJwk?: JWK;
  /** DPoP-bound tokens (RFC 9449) with a key pair generated for this agent object. */
  dpop?: boolean;
  /** Space-separated scopes to ask for (default: all of the agent's boundaries). */
  scope?: string;
  /** Sets `task_id` on the agent's tokens. */
  taskId?: string;
  fetch?: typeof fetch;
  /**
   * The origins (or URLs; only their origin counts) of the apps `fetch()` may send the agent's
   * token to and take challenges from, e.g. `['https://files.example.com']`. The issuer's origin
   * is always allowed. Any other origin gets the request without the token, and a transaction or
   * step-up challenge it answers with is refused (MfaProxyError `untrusted_challenge`): a relay
   * cannot collect the token nor have the human approve its challenge. Without `resources` every
   * origin is trusted (SDK.md v1.1's `fetch` adds the token to any request): set it in production.
   * Either way a transaction challenge must be issued (`iss`) by the origin fetched.
   */
  resources?: string[];
  /** Called when `fetch()` waits for a human (a transaction challenge or a sudo step-up). */
  onPending?: (pending: PendingStepUp) => void;
}

export interface StepUpRequest {
  action: string;
  resource?: string;
  details?: Record<string, unknown>;
  bindingMessage?: string;
  methods?: Array<'webauthn' | 'totp'>;
  grant?: { type: 'token' } | { type: 'sudo'; scopes: string[]; duration?: number };
  expiresIn?: number;
}

export interface PendingStepUp {
  id: string;
  bindingCode?: string;
  expiresAt?: string;
  approvalUrl?: string;
}

export interface StepUpOptions {
  idempotencyKey?: string;
  signal?: AbortSignal;
  onPending?: (pending: PendingStepUp) => void;
}

export interface Approval {
  stepUpId: string;
  mfaProxyToken?: string;
  sudoToken?: string;
  sudoExpiresAt?: string;
}

interface CachedToken {
  token: string;
  type: 'Bearer' | 'DPoP';
  expiresAt: number;
}

/** Renew this long before `exp`, so a token never expires in flight. */
const RENEW_BEFORE_MS = 30_000;
/** Longest `wait` the service allows on `GET /v1/step-ups/:id`. */
const LONG_POLL_S = 30;

/**
 * An agent of mfa-proxy: its access token (client credentials, cached, DPoP when asked),
 * step-ups that wait for the human, and a `fetch` that answers transaction and step-up challenges.
 */
export class MfaProxyAgent {
  private readonly issuer: string;
  private readonly fetchFn: typeof fetch;
  private cached: CachedToken | undefined;
  private pendingToken: Promise<CachedToken> | undefined;
  private dpopKey: Promise<DpopKey> | undefined;
  /** null: no `resources` given, every origin is trusted. */
  private readonly trustedOrigins: Set<string> | null;

  constructor(private readonly options: MfaProxyAgentOptions) {
    if (!options.clientSecret && !options.privateJwk) throw new TypeError('MfaProxyAgent needs clientSecret or privateJwk');
    this.issuer = trimIssuer(options.issuer);
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    if (options.dpop) this.dpopKey = DpopKey.generate();
    this.trustedOrigins = options.resources ? new Set([new URL(this.issuer).origin, ...options.resources.map((r) => new URL(r).origin)]) : null;
  }

  /** The current access token: from the cache until 30 s before its `exp`, then a new one. */
  async accessToken(): Promise<string> {
    return (await this.token()).token;
  }

  /** Forgets the cached token (the next call asks for a new one). */
  clearToken(): void {
    this.cached = undefined;
  }

  private async token(): Promise<CachedToken> {
    if (this.cached && Date.now() < this.cached.expiresAt - RENEW_BEFORE_MS) return this.cached;
    // one request for concurrent callers
    this.pendingToken ??= this.requestToken().finally(() => (this.pendingToken = undefined));
    this.cached = await this.pendingToken;
    return this.cached;
  }

  private async requestToken(): Promise<CachedToken> {
    const endpoints = await this.endpoints();
    const form: Record<string, string> = { grant_type: 'client_credentials' };
    if (this.options.scope) form.scope = this.options.scope;
    if (this.options.taskId) form.task_id = this.options.taskId;
    const res = await this.oauthPost(endpoints.token, form);
    if (!res.ok) throw await errorFrom(res, 'token request failed');
    const body = (await res.json()) as { access_token: string; token_type: string; expires_in: number };
    return {
      token: body.access_token,
      type: body.token_type.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer',
      expiresAt: Date.now() + body.expires_in * 1000,
    };
  }

  private endpoints(): Promise<Endpoints> {
    return discover(this.issuer, this.fetchFn);
  }

  /** A form POST to an `/oauth` endpoint with the agent's client authentication (and a DPoP proof when enabled). */
  private async oauthPost(url: string, form: Record<string, string>): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const params = new URLSearchParams(form);
    if (this.options.privateJwk) {
      // RFC 7523 §3: a JWT signed by the client; aud = the issuer identifier, one value (draft-ietf-oauth-rfc7523bis), whichever endpoint it is sent to
      const jwk = this.options.privateJwk;
      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg: algOf(jwk), ...(jwk.kid ? { kid: jwk.kid } : {}) })
        .setIssuer(this.options.clientId)
        .setSubject(this.options.clientId)
        .setAudience(this.issuer)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('60s')
        .sign(await importJWK(jwk, algOf(jwk)));
      params.set('client_id', this.options.clientId);
      params.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      params.set('client_assertion', assertion);
    } else {
      // RFC 6749 §2.3.1: client_secret_basic, both parts form-encoded
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(this.options.clientId)}:${enc(this.options.clientSecret!)}`).toString('base64')}`;
    }
    if (this.dpopKey) headers.dpop = await (await this.dpopKey).proof('POST', url);
    return this.fetchFn(url, { method: 'POST', headers, body: params.toString() });
  }

  /** `Authorization` (and `DPoP`) headers presenting `token` on `method url`. */
  private async authHeaders(token: CachedToken, method: string, url: string): Promise<Record<string, string>> {
    if (token.type === 'DPoP' && this.dpopKey) {
      return { authorization: `DPoP ${token.token}`, dpop: await (await this.dpopKey).proof(method, url, token.token) };
    }
    return { authorization: `Bearer ${token.token}` };
  }

  private async api(method: string, path: string, body?: unknown, extra: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
    const url = `${this.issuer}${path}`;
    const headers: Record<string, string> = { accept: 'application/json', ...(await this.authHeaders(await this.token(), method, url)), ...extra };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return this.fetchFn(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  }

  /**
   * Asks the human to approve one exact action and waits (long-polling) for the decision.
   * Resolves with the approval's token; rejects with StepUpDeniedError, StepUpExpiredError or
   * StepUpCancelledError. Aborting `signal` cancels the step-up.
   */
  async stepUp(req: StepUpRequest, opts: StepUpOptions = {}): Promise<Approval> {
    opts.signal?.throwIfAborted();
    const res = await this.api('POST', '/v1/step-ups', req, opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {}, opts.signal);
    if (res.status !== 201 && res.status !== 200) throw await errorFrom(res, 'step-up request failed');
    const created = (await res.json()) as PendingStepUp & { status: string };
    (opts.onPending ?? this.options.onPending)?.({ id: created.id, bindingCode: created.bindingCode, expiresAt: created.expiresAt, ...(created.approvalUrl ? { approvalUrl: created.approvalUrl } : {}) });
    try {
      return await this.waitForDecision(created.id, opts.signal);
    } catch (err) {
      if (opts.signal?.aborted) {
        // nobody waits for this decision any more: do not leave the human a question to answer
        await this.api('DELETE', `/v1/step-ups/${created.id}`).catch(() => undefined);
      }
      throw err;
    }
  }

  private async waitForDecision(id: string, signal?: AbortSignal): Promise<Approval> {
    for (;;) {
      signal?.throwIfAborted();
      const res = await this.api('GET', `/v1/step-ups/${id}?wait=${LONG_POLL_S}`, undefined, {}, signal);
      if (res.status === 429) {
        await sleep(Number(res.headers.get('retry-after') ?? 5) * 1000, signal);
        continue;
      }
      if (!res.ok) throw await errorFrom(res, 'step-up poll failed');
      const s = (await res.json()) as { status: string; reason?: string; mfaProxyToken?: string; sudoToken?: string; sudoExpiresAt?: string; tokenIssued?: boolean };
      switch (s.status) {
        case 'pending':
          continue;
        case 'approved':
          if (s.mfaProxyToken || s.sudoToken) {
            return { stepUpId: id, ...(s.mfaProxyToken ? { mfaProxyToken: s.mfaProxyToken } : {}), ...(s.sudoToken ? { sudoToken: s.sudoToken, sudoExpiresAt: s.sudoExpiresAt } : {}) };
          }
          // approved, but the token was claimed before or the claim came too late
          if (s.reason === 'expired') throw new StepUpExpiredError(id, s.reason);
          throw new MfaProxyError(`step-up ${id} was approved but its token was already handed out`, 409, 'token_already_issued', s);
        case 'denied':
          throw new StepUpDeniedError(id, s.reason);
        case 'expired':
          throw new StepUpExpiredError(id, s.reason);
        case 'cancelled':
          throw new StepUpCancelledError(id, s.reason);
        default:
          throw new MfaProxyError(`step-up ${id} has an unknown status ${s.status}`, 200, undefined, s);
      }
    }
  }

  /**
   * `fetch` as the agent: adds its token (a DPoP proof when bound) and `Accept-Txn-Challenge: ?1`.
   * A transaction challenge (draft-rosomakho-oauth-txn-challenge) is taken to the service, the
   * human is waited for, and the request is sent once more with the issued transaction token;
   * an RFC 9470 `insufficient_user_authentication` challenge is met with a sudo step-up and one retry.
   * The request body must be replayable (a string, bytes, URLSearchParams, FormData or Blob).
   * Only an origin in `resources` (or the issuer's) gets the token and has its challenges
   * answered; a transaction challenge must also be issued (`iss`) by the origin fetched.
   * Otherwise a challenge rejects with MfaProxyError `untrusted_challenge`.
   */
  async fetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
    const request = new Request(input, init);
    const body = request.body ? await request.arrayBuffer() : undefined;
    const send = async (auth: Record<string, string>) => {
      const headers = new Headers(request.headers);
      headers.set('accept-txn-challenge', '?1');
      for (const [k, v] of Object.entries(auth)) headers.set(k, v);
      return this.fetchFn(request.url, { method: request.method, headers, body, redirect: request.redirect, signal: init.signal ?? request.signal });
    };
    const origin = new URL(request.url).origin;
    const trusted = this.trustedOrigins === null || this.trustedOrigins.has(origin);
    // an origin not in `resources` gets the request without the agent's token
    const res = await send(trusted ? await this.authHeaders(await this.token(), request.method, request.url) : {});
    if (res.status !== 401) return res;
    const header = res.headers.get('www-authenticate');
    const untrusted = (why: string) => {
      void res.body?.cancel().catch(() => undefined);
      return new MfaProxyError(`challenge refused: ${why}`, 401, 'untrusted_challenge');
    };

    const txn = findChallenge(header, 'transaction_authorization_required');
    if (txn?.params.transaction_challenge) {
      if (!trusted) throw untrusted(`${origin} is not one of the agent's resources`);
      // the challenge is signed by the app it names (iss, checked by the service): that app must be the one fetched
      let iss: string | undefined;
      try {
        iss = new URL(String(decodeJwt(txn.params.transaction_challenge).iss)).origin;
      } catch {
        iss = undefined;
      }
      if (iss !== origin) throw untrusted(`the transaction challenge is issued by ${iss ?? 'no valid origin'}, not by ${origin}`);
      // not awaited: when the caller's fetch tee'd the response (res.clone()), cancel settles only once every branch is cancelled
      void res.body?.cancel().catch(() => undefined);
      const issued = await this.authorizeTransaction(txn.params.transaction_challenge, init.signal ?? undefined);
      return send(await this.authHeaders(issued, request.method, request.url));
    }

    const insufficient = findChallenge(header, 'insufficient_user_authentication');
    if (insufficient) {
      if (!trusted) throw untrusted(`${origin} is not one of the agent's resources`);
      // not awaited: when the caller's fetch tee'd the response (res.clone()), cancel settles only once every branch is cancelled
      void res.body?.cancel().catch(() => undefined);
      const scopes = (insufficient.params.scope ?? '').split(' ').filter(Boolean);
      if (!scopes.length) throw new MfaProxyError('insufficient_user_authentication without a scope: cannot tell which grant to ask for', 401, 'insufficient_user_authentication');
      const maxAge = Number(insufficient.params.max_age);
      const duration = Number.isFinite(maxAge) && maxAge >= 60 ? Math.min(maxAge, 900) : undefined;
      const approval = await this.stepUp(
        { action: scopes[0]!, resource: new URL(request.url).origin + new URL(request.url).pathname, grant: { type: 'sudo', scopes, ...(duration ? { duration } : {}) } },
        { signal: init.signal ?? undefined },
      );
      const cached = this.cached;
      const sudo: CachedToken = { token: approval.sudoToken!, type: cached?.type ?? 'Bearer', expiresAt: Date.parse(approval.sudoExpiresAt ?? '') || Date.now() + 60_000 };
      return send(await this.authHeaders(sudo, request.method, request.url));
    }
    return res;
  }

  /** Takes an app's signed transaction challenge to `/oauth/txn-authorization` and polls until the human decides. */
  private async authorizeTransaction(challenge: string, signal?: AbortSignal): Promise<CachedToken> {
    const endpoints = await this.endpoints();
    const started = await this.oauthPost(endpoints.txnAuthorization, { transaction_challenge: challenge });
    if (!started.ok) throw await errorFrom(started, 'transaction authorization refused');
    const s = (await started.json()) as { transaction_authorization_id: string; expires_in: number; interval?: number; binding_code?: string; step_up_id?: string };
    const id = s.step_up_id ?? s.transaction_authorization_id;
    this.options.onPending?.({ id, ...(s.binding_code ? { bindingCode: s.binding_code } : {}), expiresAt: new Date(Date.now() + s.expires_in * 1000).toISOString() });
    let interval = Math.max(1, s.interval ?? 5);
    const deadline = Date.now() + s.expires_in * 1000 + 5_000;
    for (;;) {
      await sleep(interval * 1000, signal);
      const res = await this.oauthPost(endpoints.txnAuthorization, { transaction_authorization_id: s.transaction_authorization_id });
      if (res.ok) {
        const body = (await res.json()) as { access_token: string; token_type?: string; expires_in: number };
        return { token: body.access_token, type: body.token_type?.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', expiresAt: Date.now() + body.expires_in * 1000 };
      }
      const err = await errorFrom(res, 'transaction authorization');
      if (err.code === 'authorization_pending' && Date.now() < deadline) continue;
      if (err.code === 'slow_down') {
        interval += 5; // CIBA §11: increase the interval by at least 5 s
        continue;
      }
      if (err.code === 'access_denied') throw new StepUpDeniedError(id, (err.body as { error_description?: string })?.error_description);
      if (err.code === 'expired_token' || err.code === 'authorization_pending') throw new StepUpExpiredError(id);
      throw err;
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
