import type { JWK } from 'jose';
import { DpopKey } from './dpop.js';
import { trimIssuer } from './endpoints.js';
import { errorFrom } from './errors.js';

export interface MfaProxyWorkerOptions {
  issuer: string;
  /** The task's id (`tsk_...`), as `POST /v1/tasks` returned it. */
  taskId: string;
  /** The worker's private key; its public half was registered as the task's `workerJwk`. */
  privateJwk: JWK;
  fetch?: typeof fetch;
}

const RENEW_BEFORE_MS = 30_000;

/**
 * A task's worker: draws ephemeral DPoP-bound agent tokens and the user's upstream connection
 * tokens with proofs signed by its key (RFC 9449); the task's long-lived credential never leaves the vault.
 */
export class MfaProxyWorker {
  private readonly issuer: string;
  private readonly fetchFn: typeof fetch;
  private readonly key: Promise<DpopKey>;
  private cached: { token: string; expiresAt: number } | undefined;
  private pending: Promise<{ token: string; expiresAt: number }> | undefined;

  constructor(private readonly options: MfaProxyWorkerOptions) {
    this.issuer = trimIssuer(options.issuer);
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.key = DpopKey.fromPrivateJwk(options.privateJwk);
  }

  /** A DPoP-bound worker token, cached until 30 s before it expires. */
  async accessToken(): Promise<string> {
    if (this.cached && Date.now() < this.cached.expiresAt - RENEW_BEFORE_MS) return this.cached.token;
    this.pending ??= this.requestToken().finally(() => (this.pending = undefined));
    this.cached = await this.pending;
    return this.cached.token;
  }

  private async requestToken(): Promise<{ token: string; expiresAt: number }> {
    const url = `${this.issuer}/v1/tasks/${encodeURIComponent(this.options.taskId)}/token`;
    const res = await this.fetchFn(url, { method: 'POST', headers: { accept: 'application/json', dpop: await (await this.key).proof('POST', url) } });
    if (!res.ok) throw await errorFrom(res, 'worker token request failed');
    const body = (await res.json()) as { access_token: string; expires_in: number };
    return { token: body.access_token, expiresAt: Date.now() + body.expires_in * 1000 };
  }

  /** The user's upstream access token for a vault connection (`con_...`). */
  async connectionToken(connectionId: string): Promise<{ accessToken: string; expiresIn: number; scope?: string }> {
    const url = `${this.issuer}/v1/tasks/${encodeURIComponent(this.options.taskId)}/connections/${encodeURIComponent(connectionId)}/token`;
    const res = await this.fetchFn(url, { method: 'POST', headers: { accept: 'application/json', dpop: await (await this.key).proof('POST', url) } });
    if (!res.ok) throw await errorFrom(res, 'connection token request failed');
    const body = (await res.json()) as { access_token: string; expires_in: number; scope?: string };
    return { accessToken: body.access_token, expiresIn: body.expires_in, ...(body.scope !== undefined ? { scope: body.scope } : {}) };
  }

  /** `fetch` with the worker token: `Authorization: DPoP <token>` and a fresh proof bound to it. */
  async fetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
    const request = new Request(input, init);
    const token = await this.accessToken();
    const headers = new Headers(request.headers);
    headers.set('authorization', `DPoP ${token}`);
    headers.set('dpop', await (await this.key).proof(request.method, request.url, token));
    return this.fetchFn(new Request(request, { headers }));
  }
}
