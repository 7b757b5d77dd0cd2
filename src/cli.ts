import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { ConfigError, loadConfig } from './config/config.js';
import { dataSourceOptions, runMigrations } from './database/data-source.js';

/**
 * Operator commands on the same modules as the service:
 *   migrate       run pending migrations
 *   rotate-keys   create a new signing key; the previous one stays published until its tokens expire
 *   audit-verify  recompute every app's audit hash chain; exit 1 and name the first bad seq if one breaks
 *   rekey         re-encrypt every encrypted column under MASTER_KEY (former keys in MASTER_KEY_PREVIOUS),
 *                 in batches (--batch-size=N, default 500), safe to re-run and while instances serve;
 *                 exit 1 if any value is left under a former key
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
  if (command === 'rekey') {
    const batchArg = process.argv.slice(3).find((a) => a.startsWith('--batch-size='));
    const batchSize = batchArg ? Number(batchArg.slice('--batch-size='.length)) : 500;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
      console.error('rekey: --batch-size must be an integer from 1 to 10000');
      process.exit(64);
    }
    const { Cipher } = await import('./common/crypto/cipher.js');
    const { rekey } = await import('./common/crypto/rekey.js');
    const cipher = new Cipher(config.masterKey, config.masterKeysPrevious);
    const ds = await new DataSource(dataSourceOptions(config)).initialize();
    let report;
    try {
      console.log(`rekey: re-encrypting under master key id ${cipher.currentKeyId}, batches of ${batchSize}`);
      report = await rekey(ds, cipher, {
        batchSize,
        onProgress: (p) => console.log(`  ${p.table}: ${p.rows} row(s) re-encrypted so far`),
        onFailure: (f) => console.error(`  ${f.table}.${f.column} of ${f.id}: ${f.reason}`),
      });
    } finally {
      await ds.destroy();
    }
    let rows = 0;
    for (const t of report.tables) {
      rows += t.rows;
      console.log(`${t.table}: ${t.rows} row(s) re-encrypted (${t.values} value(s)), ${t.concurrent} changed concurrently, ${t.failed} failed`);
    }
    console.log(`${rows} row(s) re-encrypted in total under master key id ${report.keyId}`);
    if (report.remaining) {
      console.error(`${report.remaining} value(s) are still sealed under a former master key: keep MASTER_KEY_PREVIOUS, fix the failures above and run rekey again`);
      process.exit(1);
    }
    console.log('every encrypted value is under MASTER_KEY: MASTER_KEY_PREVIOUS can be removed');
    return;
  }
  console.error('usage: node dist/src/cli.js <migrate|rotate-keys|audit-verify|rekey>');
  process.exit(64);
}

main(process.argv[2]).catch((err) => {
  console.error(err instanceof ConfigError ? `mfa-proxy: ${err.message}` : err);
  process.exit(1);
});
