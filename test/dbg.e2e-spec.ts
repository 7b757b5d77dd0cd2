import { it } from 'vitest';
import { startApp } from './support/app.js';
it('dbg', async () => {
  const t = await startApp({ LOG_LEVEL: 'info' });
  const r = await t.http.get('/healthz');
  console.log('status', r.status, r.headers['x-request-id']);
  await t.close();
});
