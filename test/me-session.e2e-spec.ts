import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t?.close();
});

describe('the session guard', () => {
  it('401 unauthorized without a session', async () => {
    const res = await t.http.get('/v1/me').expect(401);
    expect(res.body).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('403 csrf_required on a state-changing call without X-Requested-With', async () => {
    const res = await t.http.post('/v1/me/sign-out').expect(403);
    expect(res.body).toMatchObject({ status: 403, code: 'csrf_required' });
  });
});
