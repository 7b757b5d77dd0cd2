import { Foundation1764340000000 } from './1764340000000-Foundation.js';

/** Every migration, in order. Listed explicitly: ESM has no reliable glob import. */
export const MIGRATIONS = [Foundation1764340000000];
