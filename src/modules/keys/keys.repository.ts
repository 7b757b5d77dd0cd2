import { Injectable } from '@nestjs/common';
import { DataSource, IsNull, MoreThan, Or } from 'typeorm';
import { SigningKeyEntity } from './signing-key.entity.js';

@Injectable()
export class KeysRepository {
  constructor(private readonly ds: DataSource) {}

  private get repo() {
    return this.ds.getRepository(SigningKeyEntity);
  }

  /** Keys still published: active ones and retired ones whose tokens may still be live. */
  findPublished(now: number): Promise<SigningKeyEntity[]> {
    return this.repo.find({ where: { publishUntil: Or(IsNull(), MoreThan(now)) }, order: { createdAt: 'DESC' } });
  }

  insert(key: SigningKeyEntity): Promise<unknown> {
    return this.repo.insert(key);
  }

  /** Retires every active key except `keepKid`; they stay published until `publishUntil`. */
  async retireOthers(keepKid: string, now: number, publishUntil: number): Promise<number> {
    const res = await this.repo
      .createQueryBuilder()
      .update()
      .set({ retiredAt: now, publishUntil })
      .where('kid <> :keepKid AND retired_at IS NULL', { keepKid })
      .execute();
    return res.affected ?? 0;
  }
}
