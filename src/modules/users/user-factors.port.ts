import { Injectable } from '@nestjs/common';

export interface FactorSummary {
  id: string;
  type: 'webauthn' | 'totp';
  name: string;
  createdAt: number;
  lastUsedAt: number | null;
}

/**
 * The active factors of a user, for `GET /v1/users/:id`. The factors module depends on users, not
 * the reverse, so it plugs its reader in here at start.
 */
@Injectable()
export class UserFactorsPort {
  private reader: ((appId: string, userId: string) => Promise<FactorSummary[]>) | null = null;

  provide(reader: (appId: string, userId: string) => Promise<FactorSummary[]>): void {
    this.reader = reader;
  }

  list(appId: string, userId: string): Promise<FactorSummary[]> {
    if (!this.reader) throw new Error('no factor reader: FactorsModule is not loaded');
    return this.reader(appId, userId);
  }
}
