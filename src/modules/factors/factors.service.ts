import { Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { Cascades } from '../../common/cascade.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { Serializer } from '../../database/serializer.js';
import { isId } from '../../common/ids.js';
import { AuditLog } from '../../common/audit-log.js';
import { UserFactorsPort } from '../users/user-factors.port.js';
import { UsersService } from '../users/users.service.js';
import { EnrollmentRepository } from './enrollment/enrollment.repository.js';
import type { FactorEntity } from './factor.entity.js';
import { FactorStrategies } from './factor-strategies.js';
import { FactorsRepository } from './factors.repository.js';
import { TotpStrategy } from './totp/totp.strategy.js';
import { Clock } from '../../common/clock.js';

/** A user's factors: listing for the users module, removal, and the user-deletion cascade of this module's tables. */
@Injectable()
export class FactorsService implements OnModuleInit {
  constructor(
    private readonly repo: FactorsRepository,
    private readonly links: EnrollmentRepository,
    private readonly strategies: FactorStrategies,
    private readonly users: UsersService,
    private readonly audit: AuditLog,
    private readonly cascades: Cascades,
    private readonly userFactors: UserFactorsPort,
    private readonly serializer: Serializer,
    private readonly totp: TotpStrategy,
    private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    this.userFactors.provide((appId, userId) => this.repo.active(appId, userId));
    this.cascades.on('user.deleted', async (m, e) => {
      for (const factor of await this.repo.allOf(m, e.appId, e.userId)) await this.removeIn(m, factor);
      await this.links.deleteForUser(m, e.appId, e.userId);
    });
  }

  async delete(appId: string, userId: string, factorId: string): Promise<void> {
    const user = await this.users.findOrThrow(appId, userId);
    const factor = isId('factor', factorId) ? await this.repo.find(appId, user.id, factorId) : null;
    if (!factor) throw notFound('factor');
    await this.repo.ds.transaction(async (m) => {
      await this.removeIn(m, factor);
      await this.audit.record(m, { appId, type: 'factor.removed', outcome: 'success', userId: user.id, action: factor.type, resource: factor.id });
    });
  }

  /**
   * Runs `fn` as one transaction at a time per user, on every instance: the human's factor removals
   * and activations, so a removal decides on the user's factors as they are, not as they were.
   */
  underUserLock<T>(appId: string, userId: string, fn: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.serializer.run(`factors:${appId}:${userId}`, fn);
  }

  /**
   * The human removes one of their own factors (dashboard): never the last active one (409
   * `last_factor`). Decided inside the per-user lock from fresh rows (a factor read as pending may
   * have been activated meanwhile), so racing removals and activations cannot leave none.
   */
  async deleteUnlessLast(appId: string, userId: string, factorId: string): Promise<void> {
    if (!isId('factor', factorId) || !(await this.repo.find(appId, userId, factorId))) throw notFound('factor');
    const outcome = await this.underUserLock(appId, userId, async (m) => {
      const factor = await this.repo.find(appId, userId, factorId, m);
      if (!factor) return 'gone' as const;
      const active = await this.repo.active(appId, userId, m);
      if (factor.status === 'active' && active.length <= 1) return 'last' as const;
      // Secrets first, then the factor: the order of a TOTP confirmation's writes (no lock-order deadlock).
      await this.strategies.for(factor.type).removeData(m, factor);
      if (!(await this.repo.delete(m, factor))) throw notFound('factor');
      await this.audit.record(m, { appId, type: 'factor.removed', outcome: 'success', userId, action: factor.type, resource: factor.id });
      return 'removed' as const;
    });
    if (outcome === 'last') throw new AppError('last_factor', 'this is your last active factor: add another one before removing it');
    if (outcome === 'gone') throw notFound('factor');
  }

  /**
   * Activates a pending TOTP factor of the user with a first valid code (enrollment link or
   * dashboard), under the per-user lock of removals: a removal decides after this activation, or
   * before it. Idempotent once active; a wrong code is `invalid_code`.
   */
  async confirmTotpOrThrow(appId: string, userId: string, factorId: string, code: string): Promise<{ factorId: string; status: 'active' }> {
    const factor = isId('factor', factorId) ? await this.repo.find(appId, userId, factorId) : null;
    if (!factor || factor.type !== 'totp') throw notFound('factor');
    if (factor.status === 'active') return { factorId, status: 'active' };
    const ok = await this.underUserLock(appId, userId, async (m) => {
      const step = await this.totp.consumeCode(m, appId, factorId, code);
      if (step === null || !(await this.repo.activate(m, appId, factorId, this.clock.now()))) return false;
      await this.recordEnrolled(m, factor);
      return true;
    });
    if (!ok) throw new AppError('invalid_code', 'the code is not valid for this authenticator; check the device clock and try the current code');
    return { factorId, status: 'active' };
  }

  /** The audit event of a factor that became usable, in the enrollment's transaction. */
  recordEnrolled(m: EntityManager, factor: Pick<FactorEntity, 'appId' | 'userId' | 'id' | 'type'>): Promise<void> {
    return this.audit.record(m, { appId: factor.appId, type: 'factor.enrolled', outcome: 'success', userId: factor.userId, action: factor.type, resource: factor.id });
  }

  private async removeIn(m: EntityManager, factor: FactorEntity): Promise<void> {
    await this.strategies.for(factor.type).removeData(m, factor);
    await this.repo.delete(m, factor);
  }
}
