import { Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import type { AppConfig } from './config/config.schema.js';
import { Clock } from './common/clock.js';
import { CoreModule } from './common/core.module.js';
import { serializeSqliteConnection } from './database/sqlite-serial.js';
import { dataSourceOptions } from './database/data-source.js';
import { checkpointSqliteInBackground } from './database/sqlite-checkpointer.js';
import { AgentsModule } from './modules/agents/agents.module.js';
import { AppsModule } from './modules/apps/apps.module.js';
import { FactorsModule } from './modules/factors/factors.module.js';
import { WebModule } from './web/web.module.js';
import { ApprovalsModule } from './modules/approvals/approvals.module.js';
import { AuditModule } from './modules/audit/audit.module.js';
import { EventsModule } from './modules/events/events.module.js';
import { MfaProxyTokensModule } from './modules/mfa-proxy-tokens/mfa-proxy-tokens.module.js';
import { StepUpsModule } from './modules/step-ups/step-ups.module.js';
import { CibaModule } from './modules/ciba/ciba.module.js';
import { TasksModule } from './modules/tasks/tasks.module.js';
import { TxnAuthorizationModule } from './modules/txn-authorization/txn-authorization.module.js';
import { RateLimitModule } from './modules/rate-limit/rate-limit.service.js';
import { KeysModule } from './modules/keys/keys.module.js';
import { OAuthModule } from './modules/oauth/oauth.module.js';
import { OpsModule } from './modules/ops/ops.module.js';
import { UsersModule } from './modules/users/users.module.js';
import { MeModule } from './modules/me/me.module.js';
import { PushModule } from './modules/push/push.module.js';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, clock?: Clock): DynamicModule {
    return {
      module: AppModule,
      imports: [
        CoreModule.forRoot(config, clock),
        TypeOrmModule.forRootAsync({
          useFactory: () => dataSourceOptions(config),
          dataSourceFactory: async (options) => {
            const ds = await new DataSource(options!).initialize();
            serializeSqliteConnection(ds);
            checkpointSqliteInBackground(ds);
            return ds;
          },
        }),
        OpsModule,
        KeysModule,
        AppsModule,
        UsersModule,
        AgentsModule,
        OAuthModule,
        RateLimitModule,
        AuditModule,
        EventsModule,
        FactorsModule,
        MfaProxyTokensModule,
        StepUpsModule,
        CibaModule,
        ApprovalsModule,
        TxnAuthorizationModule,
        TasksModule,
        MeModule,
        PushModule,
        WebModule,
      ],
    };
  }
}
