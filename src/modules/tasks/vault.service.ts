import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { AppError } from '../../common/errors/app-error.js';
import { AuditService } from '../audit/audit.service.js';
import { OutboxService } from '../events/outbox.service.js';
import { postOutbound, type OutboundResponse } from '../events/outbound-http.js';
import { ConnectionEntity, UserConnectionEntity } from './task.entity.js';

/** An access token is re-used until this long before it expires. */
const EARLY_REFRESH_MS = 30_000;
/** postOutbound's socket timeout: a provider silent this long has failed. */
const UPSTREAM_TIMEOUT_MS = 10_000;
/** The whole exchange, however slowly or endlessly the provider streams its answer. */
const UPSTREAM_DEADLINE_MS = 10_000;
/** The most of an answer held in memory (postOutbound drops the rest). A token answer is a few KB. */
const RESPONSE_MAX_CHARS = 1024 * 1024;
/** RFC 6749 §A.12: access-token = 1*VSCHAR. Longer than this is not a token we hand out or cache. */
const ACCESS_TOKEN_MAX = 16 * 1024;
const VSCHAR = /^[\x20-\x7e]+$/;
/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
/** `user_connections.scope` is varchar(1024). */
const SCOPE_MAX = 1024;
const EXPIRES_IN_DEFAULT_S = 3600;
const EXPIRES_IN_MAX_S = 86_400;

export interface UpstreamToken {
  access_token: string;
  expires_in: number;
  scope: string;
}

/** What a provider's token endpoint answered (transport failures and 5xx are thrown as `upstream_error`). */
type UpstreamAnswer =
  | { kind: 'ok'; refreshToken: string | null; accessToken: string; expiresIn: number; scope: string }
  /** A 200 with no token we can hand out; a rotated refresh token in it is still kept. */
  | { kind: 'unusable'; refreshToken: string | null; reason: string }
  | { kind: 'invalid_grant' };

type RefreshOutcome = { ok: true; token: UpstreamToken } | { ok: false; error: unknown; reauth?: UserConnectionEntity };

const col = (column: string, id: string, table = 'user_connections') => ({ table, column, id });

/**
 * Holds users' upstream refresh tokens and hands workers only access tokens. One upstream refresh
 * at a time per credential: in-process single flight, and a row lock on PostgreSQL across instances.
 * A rotated refresh token is never lost (API.md v1.1): it is written first, on its own, and kept
 * whatever else the provider's answer holds.
 */
@Injectable()
export class VaultService {
  private readonly inFlight = new Map<string, Promise<UpstreamToken>>();

  constructor(
    private readonly ds: DataSource,
    private readonly cipher: Cipher,
    private readonly audit: AuditService,
    private readonly outbox: OutboxService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  accessToken(uc: UserConnectionEntity, connection: ConnectionEntity, taskRef: string): Promise<UpstreamToken> {
    const running = this.inFlight.get(uc.id);
    if (running) return running;
    const p = this.refreshOnce(uc.id, connection, taskRef).finally(() => this.inFlight.delete(uc.id));
    this.inFlight.set(uc.id, p);
    return p;
  }

  private async refreshOnce(ucId: string, connection: ConnectionEntity, taskRef: string): Promise<UpstreamToken> {
    // PostgreSQL: the row lock makes other instances wait for this refresh, then read its result.
    // SQLite (one instance): the in-process single flight is enough, and no transaction is held
    // open across the upstream call (its one connection would block every other writer).
    const pg = this.ds.options.type === 'postgres';
    const run = <T>(fn: (m: EntityManager) => Promise<T>) => (pg ? this.ds.transaction(fn) : fn(this.ds.manager));
    // Errors after the rotation are returned, not thrown: thrown, they would roll the rotation back.
    const outcome = await run(async (m): Promise<RefreshOutcome> => {
      const q = m.createQueryBuilder(UserConnectionEntity, 'u').where('u.id = :id', { id: ucId });
      if (pg) q.setLock('pessimistic_write');
      const uc = (await q.getOne())!;
      if (uc.status !== 'active') return { ok: false, error: new AppError('reauth_required', 'the user must grant access to this connection again') };
      const cached = this.cached(uc);
      if (cached) return { ok: true, token: cached };
      const answer = await this.callUpstream(uc, connection);
      if (answer.kind === 'invalid_grant') {
        return { ok: false, reauth: uc, error: new AppError('reauth_required', 'the upstream provider refused the stored grant; the user must grant access again') };
      }
      const now = this.clock.now();
      // RFC 6749 §6, OAuth 2.1 §4.3.1: the provider may already have revoked the old refresh token,
      // so its replacement is stored first, in its own statement, before anything that could fail.
      if (answer.refreshToken) {
        await m.update(UserConnectionEntity, { id: uc.id }, { refreshTokenEnc: this.cipher.encrypt(answer.refreshToken, col('refresh_token_enc', uc.id)), updatedAt: now });
      }
      const audit = { appId: uc.appId, type: 'vault.upstream_refresh', userId: uc.userId, taskId: taskRef, action: connection.name.slice(0, 64) };
      if (answer.kind === 'unusable') {
        const failed = await this.afterRotation(m, pg, (sm) => this.audit.record(sm, { ...audit, outcome: 'failure' }));
        return { ok: false, error: failed ?? new AppError('upstream_error', 'the upstream token endpoint answered without a usable access token', { logDetail: answer.reason }) };
      }
      const failed = await this.afterRotation(m, pg, async (sm) => {
        await sm.update(UserConnectionEntity, { id: uc.id }, {
          accessTokenEnc: this.cipher.encrypt(answer.accessToken, col('access_token_enc', uc.id)),
          accessTokenExpiresAt: now + answer.expiresIn * 1000,
          scope: answer.scope,
          updatedAt: now,
        });
        await this.audit.record(sm, { ...audit, outcome: 'success' });
      });
      return failed ? { ok: false, error: failed } : { ok: true, token: { access_token: answer.accessToken, expires_in: answer.expiresIn, scope: answer.scope } };
    });
    if (outcome.ok) return outcome.token;
    if (outcome.reauth) await this.markReauth(outcome.reauth, connection, taskRef);
    throw outcome.error;
  }

  /**
   * Writes that follow a stored rotation. On PostgreSQL they run in a savepoint, so their failure
   * rolls back only themselves and the rotation still commits; the error is returned.
   */
  private async afterRotation(m: EntityManager, pg: boolean, fn: (m: EntityManager) => Promise<void>): Promise<unknown> {
    try {
      await (pg ? m.transaction(fn) : fn(m));
      return undefined;
    } catch (err) {
      return err;
    }
  }

  private cached(uc: UserConnectionEntity): UpstreamToken | null {
    if (!uc.accessTokenEnc || (uc.accessTokenExpiresAt ?? 0) - EARLY_REFRESH_MS <= this.clock.now()) return null;
    return {
      access_token: this.cipher.decryptString(uc.accessTokenEnc, col('access_token_enc', uc.id)),
      expires_in: Math.floor((uc.accessTokenExpiresAt! - this.clock.now()) / 1000),
      scope: uc.scope ?? '',
    };
  }

  /** A permanent refusal: the connection needs the user's consent again; the app is told. */
  private async markReauth(uc: UserConnectionEntity, connection: ConnectionEntity, taskRef: string): Promise<void> {
    await this.ds.transaction(async (m: EntityManager) => {
      const res = await m.update(UserConnectionEntity, { id: uc.id, status: 'active' }, { status: 'reauth_required', accessTokenEnc: null, accessTokenExpiresAt: null, updatedAt: this.clock.now() });
      if (!res.affected) return;
      await this.audit.record(m, { appId: uc.appId, type: 'vault.reauth_required', outcome: 'failure', userId: uc.userId, taskId: taskRef, action: connection.name.slice(0, 64) });
      await this.outbox.add(m, uc.appId, 'connection.reauth_required', { userId: uc.userId, connectionId: connection.id });
    });
  }

  private async callUpstream(uc: UserConnectionEntity, c: ConnectionEntity): Promise<UpstreamAnswer> {
    const refreshToken = this.cipher.decryptString(uc.refreshTokenEnc, col('refresh_token_enc', uc.id));
    const clientSecret = this.cipher.decryptString(c.clientSecretEnc, col('client_secret_enc', c.id, 'connections'));
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, ...(c.scopes.length ? { scope: c.scopes.join(' ') } : {}) });
    const basic = Buffer.from(`${encodeURIComponent(c.clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
    let res: OutboundResponse;
    try {
      res = await withDeadline(
        postOutbound(new URL(c.tokenEndpoint), form.toString(), { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${basic}` }, {
          timeoutMs: UPSTREAM_TIMEOUT_MS,
          allowPrivate: this.config.webhookAllowPrivate,
          maxBytes: RESPONSE_MAX_CHARS,
        }),
        UPSTREAM_DEADLINE_MS,
      );
    } catch {
      throw new AppError('upstream_error', 'the upstream token endpoint could not be reached');
    }
    return readTokenAnswer(res, boundedScope(c.scopes.join(' ')));
  }
}

/** `p`, or a rejection after `ms` (postOutbound bounds silence, not a provider that streams forever). */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('upstream deadline exceeded')), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * RFC 6749 §5.1/§5.2, read defensively: only the members below are looked at, each checked and
 * bounded; unknown members are ignored. The access token is used only from one complete, valid
 * answer; a rotated refresh token is taken from whatever complete members precede a fault.
 */
export function readTokenAnswer(res: OutboundResponse, requestedScope: string): UpstreamAnswer {
  const { members, complete } = topLevelMembers(res.body, WANTED);
  // RFC 6749 §5.2: invalid_grant means the refresh token is dead (revoked, expired, reused).
  if (res.status === 400 && members.get('error') === 'invalid_grant') return { kind: 'invalid_grant' };
  if (res.status !== 200) throw new AppError('upstream_error', `the upstream token endpoint answered ${res.status}`);
  const rt = members.get('refresh_token');
  const refreshToken = typeof rt === 'string' && rt.length > 0 ? rt : null;
  const unusable = (reason: string): UpstreamAnswer => ({ kind: 'unusable', refreshToken, reason });
  if (!complete) return unusable('the answer is not one complete JSON object (malformed, or cut at the size limit)');
  const accessToken = members.get('access_token');
  if (typeof accessToken !== 'string' || !accessToken.length) return unusable('no access_token');
  if (accessToken.length > ACCESS_TOKEN_MAX) return unusable(`access_token longer than ${ACCESS_TOKEN_MAX} characters`);
  if (!VSCHAR.test(accessToken)) return unusable('access_token has characters outside VSCHAR');
  // §5.1 requires token_type; an answer without one is taken as Bearer (common), any other type is refused.
  const type = members.get('token_type');
  if (type !== undefined && (typeof type !== 'string' || type.toLowerCase() !== 'bearer')) return unusable('token_type is not Bearer');
  const expiresIn = expiresInOf(members.get('expires_in'));
  if (expiresIn === null) return unusable('expires_in is not a positive number of seconds');
  // §5.1: an omitted scope is the requested one.
  const scope = members.has('scope') && typeof members.get('scope') === 'string' ? boundedScope(members.get('scope') as string) : requestedScope;
  return { kind: 'ok', refreshToken, accessToken, expiresIn, scope };
}

function expiresInOf(value: unknown): number | null {
  if (value === undefined) return EXPIRES_IN_DEFAULT_S;
  // Some providers send the number as a string of digits.
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < 1) return null;
  return Math.min(Math.floor(n), EXPIRES_IN_MAX_S);
}

/** Whole RFC 6749 §3.3 scope tokens, in order, as many as fit the stored column; anything else is dropped. */
export function boundedScope(scope: string): string {
  let out = '';
  for (const token of scope.split(' ')) {
    if (!SCOPE_TOKEN.test(token)) continue;
    const next = out ? `${out} ${token}` : token;
    if (next.length > SCOPE_MAX) break;
    out = next;
  }
  return out;
}

const WANTED = new Set(['access_token', 'refresh_token', 'token_type', 'expires_in', 'scope', 'error']);
const NESTED = Symbol('nested');
const WS = /[ \t\n\r]*/y;
const PRIMITIVE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;

/**
 * The top-level members of a JSON object text that may be cut short or malformed part-way: each
 * member up to the first fault, when followed by `,` or `}` (so a value cut by the size limit is never
 * taken). Only `wanted` string values are decoded; nested values are skipped without recursion.
 * `complete`: the text is exactly one object.
 */
export function topLevelMembers(text: string, wanted: ReadonlySet<string>): { members: Map<string, unknown>; complete: boolean } {
  const members = new Map<string, unknown>();
  let i = skipWs(text, 0);
  if (text[i] !== '{') return { members, complete: false };
  i = skipWs(text, i + 1);
  if (text[i] === '}') return { members, complete: skipWs(text, i + 1) === text.length };
  for (;;) {
    const keyEnd = stringEnd(text, i);
    if (keyEnd < 0) break;
    const key = decodeString(text, i, keyEnd);
    i = skipWs(text, keyEnd);
    if (key === null || text[i] !== ':') break;
    i = skipWs(text, i + 1);
    const value = readValue(text, i, wanted.has(key));
    if (!value) break;
    i = skipWs(text, value.end);
    if (text[i] !== ',' && text[i] !== '}') break;
    if (value.value !== NESTED) members.set(key, value.value);
    if (text[i] === '}') return { members, complete: skipWs(text, i + 1) === text.length };
    i = skipWs(text, i + 1);
  }
  return { members, complete: false };
}

function skipWs(text: string, i: number): number {
  WS.lastIndex = i;
  WS.test(text);
  return WS.lastIndex;
}

/** The index after the closing quote of the string starting at `i`, or -1. */
function stringEnd(text: string, i: number): number {
  if (text[i] !== '"') return -1;
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === 0x5c) j++;
    else if (c === 0x22) return j + 1;
  }
  return -1;
}

function decodeString(text: string, start: number, end: number): string | null {
  try {
    return JSON.parse(text.slice(start, end)) as string;
  } catch {
    return null;
  }
}

function readValue(text: string, i: number, decode: boolean): { value: unknown; end: number } | null {
  const c = text[i];
  if (c === '"') {
    const end = stringEnd(text, i);
    if (end < 0) return null;
    if (!decode) return { value: NESTED, end };
    const value = decodeString(text, i, end);
    return value === null ? null : { value, end };
  }
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text[j];
      if (d === '"') {
        const end = stringEnd(text, j);
        if (end < 0) return null;
        j = end - 1;
      } else if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        if (--depth === 0) return { value: NESTED, end: j + 1 };
      }
    }
    return null;
  }
  PRIMITIVE.lastIndex = i;
  if (!PRIMITIVE.test(text)) return null;
  return { value: JSON.parse(text.slice(i, PRIMITIVE.lastIndex)), end: PRIMITIVE.lastIndex };
}
