import { Logger } from '@nestjs/common';
import { ConfigError, loadConfig, type BootNotice } from './config/config.js';
import { createApp } from './bootstrap.js';

async function main(): Promise<void> {
  const notices: BootNotice[] = [];
  let config;
  try {
    config = loadConfig(process.env, notices);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`mfa-proxy: ${err.message}`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const app = await createApp(config);
  const logger = new Logger('main');
  for (const n of notices) (n.level === 'warn' ? logger.warn(n.message) : logger.log(n.message));
  await app.listen({ port: config.port, host: config.host });
  logger.log(`mfa-proxy listening on ${config.publicUrl} (port ${config.port}, ${config.database.type}${config.redis ? ' + redis' : ''})`);
}

main().catch((err) => {
  console.error('mfa-proxy failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
