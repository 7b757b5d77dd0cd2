import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock.js';
import { AppError, notFound } from '../../common/errors/app-error.js';
import { isId, newId } from '../../common/ids.js';
import { Cascades, CascadeScope } from '../../common/cascade.js';
import { iso, isoOrNull } from '../../common/time.js';
import { isUniqueViolation } from '../../database/errors.js';
import { AuditLog } from '../../common/audit-log.js';
import { UserFactorsPort } from './user-factors.port.js';
import { UserEntity } from './user.entity.js';
import { UsersRepository } from './users.repository.js';
import type { CreateUserDto, UserDto, UserWithFactorsDto } from './dto/user.dto.js';

@Injectable()
export class UsersService {
  constructor(
    private readonly repo: UsersRepository,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly cascades: Cascades,
    private readonly factors: UserFactorsPort,
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
      await this.repo.ds.transaction(async (m) => {
        await this.repo.insert(m, user);
        await this.audit.record(m, { appId, type: 'user.created', outcome: 'success', userId: user.id });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'a user with this externalId already exists in this app');
      throw err;
    }
    return this.toDto(user);
  }

  async get(appId: string, id: string): Promise<UserWithFactorsDto> {
    const user = await this.findOrThrow(appId, id);
    const factors = await this.factors.list(appId, user.id);
    return {
      ...this.toDto(user),
      factors: factors.map((f) => ({ id: f.id, type: f.type, name: f.name, createdAt: iso(f.createdAt), lastUsedAt: isoOrNull(f.lastUsedAt) })),
    };
  }

  /** Deletes the user; in the same transaction every module follows (`user.deleted`): agents revoked, factors gone, tasks ended. */
  async delete(appId: string, id: string): Promise<void> {
    if (!isId('user', id)) throw notFound('user');
    const now = this.clock.now();
    const scope = new CascadeScope();
    const deleted = await this.repo.ds.transaction(async (m) => {
      if (!(await this.repo.delete(m, appId, id))) return false;
      await this.audit.record(m, { appId, type: 'user.deleted', outcome: 'success', userId: id });
      await this.cascades.emit(m, scope, { type: 'user.deleted', appId, userId: id, now });
      return true;
    });
    if (!deleted) throw notFound('user');
    await scope.committed();
  }

  async findOrThrow(appId: string, id: string): Promise<UserEntity> {
    const user = isId('user', id) ? await this.repo.find(appId, id) : null;
    if (!user) throw notFound('user');
    return user;
  }

  toDto(user: UserEntity): UserDto {
    return { id: user.id, externalId: user.externalId, displayName: user.displayName, email: user.email, createdAt: iso(user.createdAt) };
  }
}
