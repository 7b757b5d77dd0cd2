import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { ConfigError, loadConfig } from './config/config.js';
import { dataSourceOptions, runMigrations } from './database/data-source.js';

/**
 * Operator commands on the same modules as the service:
 *   migrate       run pending migrations
 *   rotate-keys   create a new signing key; the previous one stays published until its tokens expire
 *   audit-verify  recompute every app's audit hash chain; exit 1 and name the first bad seq if one breaks
 */
async function main(command: string | undefined): Promise<void> {
  const config = loadConfig(process.env);
  if (command === 'migrate') {
    const ds = await new DataSource(dataSourceOptions(config)).initialize();
    try {
      const ran = await runMigrations(ds);
      console.log(ran.length ? `applied: ${ran.join(', ')}` : 'database is up to date');
    } finally {
      await ds.destroy();
    }
    return;
  }
  if (command === 'rotate-keys') {
    const { createApp } = await import('./bootstrap.js');
    const { KeysService } = await import('./modules/keys/keys.service.js');
    const app = await createApp({ ...config, logLevel: 'warn' });
    try {
      const { kid, retired } = await app.get(KeysService).rotate();
      console.log(`new signing key ${kid}; ${retired} previous key(s) retired and kept in the JWKS until their tokens expire`);
    } finally {
      await app.close();
    }
    return;
  }
  if (command === 'audit-verify') {
    const { createApp } = await import('./bootstrap.js');
    const { AuditService } = await import('./modules/audit/audit.service.js');
    const app = await createApp({ ...config, logLevel: 'warn' });
    let broken = 0;
    try {
      const results = await app.get(AuditService).verifyAll();
      for (const { appId, check } of results) {
        if (check.valid) console.log(`${appId}: ok, ${check.count} events, head ${check.headHash}`);
        else {
          broken++;
          console.log(`${appId}: BROKEN at seq ${check.firstBadSeq} (${check.count} events chained before it)`);
        }
      }
      console.log(`${results.length} app(s) checked, ${broken} broken`);
    } finally {
      await app.close();
    }
    if (broken) process.exit(1);
    return;
  }
  console.error('usage: node dist/src/cli.js <migrate|rotate-keys|audit-verify>');
  process.exit(64);
}

main(process.argv[2]).catch((err) => {
  console.error(err instanceof ConfigError ? `mfa-proxy: ${err.message}` : err);
  process.exit(1);
});
