import { AsyncLocalStorage } from 'node:async_hooks';
import { PinoLogger } from 'nestjs-pino';

/** What we know about the caller of the current request: for logs and the audit trail. */
export interface RequestFields {
  requestId?: string;
  ip?: string;
  appId?: string;
  actorType?: 'operator' | 'app' | 'agent' | 'human' | 'system';
  actorId?: string;
  userId?: string;
  agentId?: string;
  model?: string;
  taskId?: string | null;
}

const storage = new AsyncLocalStorage<RequestFields>();
// PinoLogger.assign acts on nestjs-pino's own per-request store; any instance reaches it.
const pino = new PinoLogger({});

const LOGGED: (keyof RequestFields)[] = ['appId', 'actorType', 'agentId', 'userId', 'model', 'taskId'];

export const RequestContext = {
  run<T>(fields: RequestFields, fn: () => T): T {
    return storage.run(fields, fn);
  },

  get(): RequestFields {
    return storage.getStore() ?? {};
  },

  /** Adds fields to the request's context and to every later log line of the request. */
  assign(fields: RequestFields): void {
    const store = storage.getStore();
    if (store) Object.assign(store, fields);
    const logged = Object.fromEntries(LOGGED.filter((k) => fields[k] !== undefined).map((k) => [k, fields[k]]));
    try {
      pino.assign(logged);
    } catch {
      /* outside a request (CLI, background job): nothing to bind */
    }
  },
};
