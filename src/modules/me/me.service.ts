import { Injectable } from '@nestjs/common';
import type { HumanPrincipal } from '../../common/auth/human.js';
import { notFound } from '../../common/errors/app-error.js';
import { AppsService } from '../apps/apps.service.js';
import { AuditService } from '../audit/audit.service.js';
import type { AuditPageDto } from '../audit/dto/audit.dto.js';
import { UsersRepository } from '../users/users.repository.js';
import type { ActivityQueryDto } from './dto/dashboard.dto.js';
import type { MeDto } from './dto/me.dto.js';

/** Who is signed in, and what happened to them. */
@Injectable()
export class MeService {
  constructor(
    private readonly users: UsersRepository,
    private readonly apps: AppsService,
    private readonly audit: AuditService,
  ) {}

  async profile(human: HumanPrincipal): Promise<MeDto> {
    const user = await this.users.find(human.appId, human.userId);
    if (!user) throw notFound('user');
    return { user: { id: user.id, displayName: user.displayName }, app: { name: await this.apps.name(human.appId) } };
  }

  /** The user's audit events, newest first (request events left out). */
  activity(human: HumanPrincipal, q: ActivityQueryDto): Promise<AuditPageDto> {
    return this.audit.listForUser(human.appId, human.userId, q);
  }
}
