/** Pub/sub channels that more than one module publishes or follows (every instance receives them). */

/** An agent stopped being valid or changed (status, boundaries): caches drop it. `{ agentId }` */
export const AGENT_CHANGED = 'agent.changed';
/** A task ended: its worker tokens stop working. `{ taskId }` */
export const TASK_ENDED = 'task.ended';
/** An app's settings changed (webhook URL or secret, origins): caches of it drop it. `{ appId }` */
export const APP_CHANGED = 'app.changed';
