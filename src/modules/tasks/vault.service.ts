import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { APP_CONFIG } from '../../config/config.js';
import type { AppConfig } from '../../config/config.schema.js';
import { Clock } from '../../common/clock.js';
import { Cipher } from '../../common/crypto/cipher.js';
import { AppError } from '../../common/errors/app-error.js';
import { AuditService } from '../audit/audit.service.js';
import { OutboxService } from '../events/outbox.service.js';
import { postOutbound } from '../events/outbound-http.js';
import { ConnectionEntity, UserConnectionEntity } from './task.entity.js';

/** An access token is re-used until this long before it expires. */
const EARLY_REFRESH_MS = 30_000;
const UPSTREAM_TIMEOUT_MS = 10_000;

export interface UpstreamToken {
  access_token: string;
  expires_in: number;
  scope: string;
}

const col = (column: string, id: string, table = 'user_connections') => ({ table, column, id });

/**
 * Holds users' upstream refresh tokens and hands workers only access tokens. One upstream refresh
 * at a time per credential: in-process single flight, and a row lock on PostgreSQL across instances.
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
    let reauth: UserConnectionEntity | null = null;
    try {
      // PostgreSQL: the row lock makes other instances wait for this refresh, then read its result.
      // SQLite (one instance): the in-process single flight is enough, and no transaction is held
      // open across the upstream call (its one connection would block every other writer).
      const pg = this.ds.options.type === 'postgres';
      const run = <T>(fn: (m: EntityManager) => Promise<T>) => (pg ? this.ds.transaction(fn) : fn(this.ds.manager));
      return await run(async (m) => {
        const q = m.createQueryBuilder(UserConnectionEntity, 'u').where('u.id = :id', { id: ucId });
        if (pg) q.setLock('pessimistic_write');
        const uc = (await q.getOne())!;
        if (uc.status !== 'active') throw new AppError('reauth_required', 'the user must grant access to this connection again');
        const cached = this.cached(uc);
        if (cached) return cached;
        const result = await this.callUpstream(uc, connection);
        if (result.kind === 'invalid_grant') {
          reauth = uc;
          throw new AppError('reauth_required', 'the upstream provider refused the stored grant; the user must grant access again');
        }
        const now = this.clock.now();
        await m.update(UserConnectionEntity, { id: uc.id }, {
          // A rotated refresh token replaces the old one (RFC 6749 §6, OAuth 2.1 rotation).
          ...(result.refreshToken ? { refreshTokenEnc: this.cipher.encrypt(result.refreshToken, col('refresh_token_enc', uc.id)) } : {}),
          accessTokenEnc: this.cipher.encrypt(result.accessToken, col('access_token_enc', uc.id)),
          accessTokenExpiresAt: now + result.expiresIn * 1000,
          scope: result.scope,
          updatedAt: now,
        });
        await this.audit.record(m, { appId: uc.appId, type: 'vault.upstream_refresh', outcome: 'success', userId: uc.userId, taskId: taskRef, action: connection.name.slice(0, 64) });
        return { access_token: result.accessToken, expires_in: result.expiresIn, scope: result.scope };
      });
    } finally {
      if (reauth) await this.markReauth(reauth, connection, taskRef);
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

  private async callUpstream(uc: UserConnectionEntity, c: ConnectionEntity): Promise<
    { kind: 'ok'; accessToken: string; refreshToken: string | null; expiresIn: number; scope: string } | { kind: 'invalid_grant' }
  > {
    const refreshToken = this.cipher.decryptString(uc.refreshTokenEnc, col('refresh_token_enc', uc.id));
    const clientSecret = this.cipher.decryptString(c.clientSecretEnc, col('client_secret_enc', c.id, 'connections'));
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, ...(c.scopes.length ? { scope: c.scopes.join(' ') } : {}) });
    const basic = Buffer.from(`${encodeURIComponent(c.clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
    let res;
    try {
      res = await postOutbound(new URL(c.tokenEndpoint), form.toString(), { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${basic}` }, {
        timeoutMs: UPSTREAM_TIMEOUT_MS,
        allowPrivate: this.config.webhookAllowPrivate,
      });
    } catch {
      throw new AppError('upstream_error', 'the upstream token endpoint could not be reached');
    }
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(res.body);
    } catch {
      /* not JSON */
    }
    // RFC 6749 §5.2: invalid_grant means the refresh token is dead (revoked, expired, reused).
    if (res.status === 400 && body.error === 'invalid_grant') return { kind: 'invalid_grant' };
    if (res.status !== 200 || typeof body.access_token !== 'string') throw new AppError('upstream_error', `the upstream token endpoint answered ${res.status}`);
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? Math.min(body.expires_in, 86_400) : 3600;
    return {
      kind: 'ok',
      accessToken: body.access_token,
      refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : null,
      expiresIn,
      scope: typeof body.scope === 'string' ? body.scope : c.scopes.join(' '),
    };
  }
}
