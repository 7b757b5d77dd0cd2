import { Injectable } from '@nestjs/common';
import type { HumanPrincipal } from '../../common/auth/human.js';
import { notFound } from '../../common/errors/app-error.js';
import { AppsService } from '../apps/apps.service.js';
import { UsersRepository } from '../users/users.repository.js';
import type { MeDto } from './dto/me.dto.js';

/** Who is signed in. */
@Injectable()
export class MeService {
  constructor(
    private readonly users: UsersRepository,
    private readonly apps: AppsService,
  ) {}

  async profile(human: HumanPrincipal): Promise<MeDto> {
    const user = await this.users.find(human.appId, human.userId);
    if (!user) throw notFound('user');
    return { user: { id: user.id, displayName: user.displayName }, app: { name: await this.apps.name(human.appId) } };
  }
}
