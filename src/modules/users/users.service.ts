import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId, newId } from '../../common/ids.js';
import { PubSub } from '../../common/cache/pubsub.js';
import { isUniqueViolation } from '../../database/errors.js';
import { AuditService } from '../audit/audit.service.js';
import { OutboxService } from '../events/outbox.service.js';
import { recordCascadeCancellations } from '../step-ups/cascade.js';
import { UserEntity } from './user.entity.js';
import { UsersRepository } from './users.repository.js';
import type { CreateUserDto, UserDto, UserWithFactorsDto } from './dto/user.dto.js';

/** Published when agents stop being valid, so every instance drops them from its caches. */
export const AGENT_CHANGED = 'agent.changed';

@Injectable()
export class UsersService {
  constructor(
    private readonly repo: UsersRepository,
    private readonly clock: Clock,
    private readonly pubsub: PubSub,
    private readonly audit: AuditService,
    private readonly outbox: OutboxService,
  ) {}

  async create(appId: string, dto: CreateUserDto): Promise<UserDto> {
    const user = Object.assign(new UserEntity(), {
      id: newId('user'),
      appId,
      externalId: dto.externalId,
      displayName: dto.displayName,
      email: dto.email ?? null,
      createdAt: this.clock.now(),
    });
    try {
      await this.repo.insert(user);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'a user with this externalId already exists in this app');
      throw err;
    }
    return this.toDto(user);
  }

  async get(appId: string, id: string): Promise<UserWithFactorsDto> {
    const user = await this.findOrThrow(appId, id);
    const factors = await this.repo.activeFactors(appId, user.id);
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return {
      ...this.toDto(user),
      factors: factors.map((f) => ({ id: f.id, type: f.type, name: f.name, createdAt: iso(f.createdAt)!, lastUsedAt: iso(f.lastUsedAt) })),
    };
  }

  async delete(appId: string, id: string): Promise<void> {
    const revoked = isId('user', id)
      ? await this.repo.deleteCascade(appId, id, this.clock.now(), (m, cancelled) => recordCascadeCancellations(m, this.audit, this.outbox, cancelled, 'user_deleted'))
      : null;
    if (revoked === null) throw notFound('user');
    for (const agentId of revoked) await this.pubsub.publish(AGENT_CHANGED, { agentId });
  }

  async findOrThrow(appId: string, id: string): Promise<UserEntity> {
    const user = isId('user', id) ? await this.repo.find(appId, id) : null;
    if (!user) throw notFound('user');
    return user;
  }

  toDto(user: UserEntity): UserDto {
    return { id: user.id, externalId: user.externalId, displayName: user.displayName, email: user.email, createdAt: new Date(user.createdAt).toISOString() };
  }
}
