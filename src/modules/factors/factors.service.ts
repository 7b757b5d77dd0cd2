import { Injectable } from '@nestjs/common';
import { notFound } from '../../common/errors/app-error.js';
import { isId } from '../../common/ids.js';
import { UsersService } from '../users/users.service.js';
import { FactorStrategies } from './factor-strategies.js';
import { FactorsRepository } from './factors.repository.js';

@Injectable()
export class FactorsService {
  constructor(
    private readonly repo: FactorsRepository,
    private readonly strategies: FactorStrategies,
    private readonly users: UsersService,
  ) {}

  async delete(appId: string, userId: string, factorId: string): Promise<void> {
    const user = await this.users.findOrThrow(appId, userId);
    const factor = isId('factor', factorId) ? await this.repo.find(appId, user.id, factorId) : null;
    if (!factor) throw notFound('factor');
    await this.repo.ds.transaction(async (m) => {
      await this.strategies.for(factor.type).removeData(m, factor);
      await this.repo.delete(m, factor);
    });
  }
}
