import type { EntityManager } from 'typeorm';
import type { FactorEntity, FactorType } from './factor.entity.js';

/**
 * One second-factor type. Each strategy owns its table, its enrollment ceremony and its
 * verification; code that must pick one does it by `type` in FactorStrategies, nowhere else.
 */
export interface FactorStrategy {
  readonly type: FactorType;
  /** RFC 8176 `amr` values of an approval made with this factor. */
  readonly amr: readonly string[];
  /** Deletes the strategy's own data of a factor, inside the caller's transaction. */
  removeData(m: EntityManager, factor: FactorEntity): Promise<void>;
}
