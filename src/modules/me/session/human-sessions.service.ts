import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { APP_CONFIG } from '../../../config/config.js';
import type { AppConfig } from '../../../config/config.schema.js';
import { AuditLog } from '../../../common/audit-log.js';
import type { HumanPrincipal } from '../../../common/auth/human.js';
import { Cascades } from '../../../common/cascade.js';
import { Clock } from '../../../common/clock.js';
import { hashSecret, randomToken, TOKEN_PREFIX } from '../../../common/crypto/tokens.js';
import { newId } from '../../../common/ids.js';
import { clearedCookie, readSessionCookies, sessionCookie } from './cookie.js';
import { HumanSessionEntity } from './human-session.entity.js';
import { HumanSessionsRepository } from './human-sessions.repository.js';

/** API.md v1.1: a session ends after 30 min without a request, and 12 h after sign-in in any case. */
export const SESSION_IDLE_MS = 30 * 60_000;
export const SESSION_ABSOLUTE_MS = 12 * 3_600_000;
/** The last-seen time is written at most this often per session (not on every request). */
export const SESSION_TOUCH_MS = 60_000;

/**
 * Dashboard sessions: state in the database (any instance serves any request), the cookie value
 * stored as SHA-256 only. Ended by sign-out, by their limits, and by the user's deletion.
 */
@Injectable()
export class HumanSessionsService implements OnModuleInit {
  readonly secure: boolean;

  constructor(
    private readonly repo: HumanSessionsRepository,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly cascades: Cascades,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.secure = new URL(config.publicUrl).protocol === 'https:';
  }

  onModuleInit(): void {
    // A deleted user's sessions end with it, in the deletion's transaction.
    this.cascades.on('user.deleted', (m, e) => this.repo.deleteForUser(m, e.appId, e.userId));
  }

  /** Starts a session inside the caller's transaction (the sign-in's); returns the Set-Cookie value. */
  async startIn(m: EntityManager, user: { appId: string; userId: string }, method: 'webauthn' | 'totp'): Promise<string> {
    const token = randomToken(TOKEN_PREFIX.session);
    const now = this.clock.now();
    const session = Object.assign(new HumanSessionEntity(), {
      id: newId('session'), appId: user.appId, userId: user.userId, tokenHash: hashSecret(token),
      createdAt: now, lastSeenAt: now, expiresAt: now + SESSION_ABSOLUTE_MS, factorProvedAt: now, method,
    });
    await this.repo.insert(m, session);
    await this.audit.record(m, { appId: user.appId, type: 'session.started', outcome: 'success', userId: user.userId, action: method, resource: session.id });
    return sessionCookie(token, this.secure);
  }

  /** The human behind a Cookie header, or null (no cookie, unknown, idle too long, past 12 h, user or app gone). */
  async authenticate(cookieHeader: string | string[] | undefined): Promise<HumanPrincipal | null> {
    // Every session cookie sent (the first few), in order: the first live session wins.
    for (const token of readSessionCookies(cookieHeader, this.secure)) {
      const human = await this.authenticateToken(token);
      if (human) return human;
    }
    return null;
  }

  private async authenticateToken(token: string): Promise<HumanPrincipal | null> {
    if (!token.startsWith(TOKEN_PREFIX.session)) return null;
    const s = await this.repo.findByTokenHash(hashSecret(token));
    if (!s) return null;
    const now = this.clock.now();
    if (s.expiresAt <= now || s.lastSeenAt + SESSION_IDLE_MS <= now) {
      await this.repo.delete(s.appId, s.id);
      return null;
    }
    if (now - s.lastSeenAt >= SESSION_TOUCH_MS) await this.repo.touch(s, now, now - SESSION_TOUCH_MS + 1);
    return { appId: s.appId, userId: s.userId, sessionId: s.id, factorProvedAt: s.factorProvedAt };
  }

  /** A factor proof in this session (an inline approval): re-opens the window for factor changes. */
  markFactorProof(human: HumanPrincipal): Promise<void> {
    return this.repo.markFactorProof(human.appId, human.sessionId, this.clock.now());
  }

  /** Sign-out: the session row goes; returns the Set-Cookie that clears the cookie. */
  async end(human: HumanPrincipal): Promise<string> {
    await this.repo.ds.transaction(async (m) => {
      await m.delete(HumanSessionEntity, { appId: human.appId, id: human.sessionId });
      await this.audit.record(m, { appId: human.appId, type: 'session.ended', outcome: 'success', userId: human.userId, resource: human.sessionId });
    });
    return this.clearCookie();
  }

  clearCookie(): string {
    return clearedCookie(this.secure);
  }

  /** Housekeeping: sessions past their absolute end. */
  deleteEnded(): Promise<void> {
    return this.repo.deleteEnded(this.clock.now());
  }
}
