import { AsyncLocalStorage } from 'node:async_hooks';

/** What we know about the caller of the current request: for logs and the audit trail. */
export interface RequestFields {
  requestId?: string;
  ip?: string;
  appId?: string;
  /** `human`: a link holder (approval, enrollment); `user`: a signed-in user (dashboard session). */
  actorType?: 'operator' | 'app' | 'agent' | 'human' | 'user' | 'system';
  actorId?: string;
  userId?: string;
  agentId?: string;
  model?: string;
  taskId?: string | null;
}

const storage = new AsyncLocalStorage<RequestFields>();

export const RequestContext = {

  run<T>(fields: RequestFields, fn: () => T): T {
    return storage.run(fields, fn);
  },

  get(): RequestFields {
    return storage.getStore() ?? {};
  },

  /** Adds fields to the request's context: every later log line and audit event of the request carries them. */
  assign(fields: RequestFields): void {
    const store = storage.getStore();
    if (store) Object.assign(store, fields);
  },
};
