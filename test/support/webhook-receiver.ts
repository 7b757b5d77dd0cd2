import { createServer, type Server } from 'node:http';

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: string;
  json: { id: string; type: string; data: Record<string, unknown> };
}

export interface WebhookReceiverOptions {
  /** Answer 500 to this many requests first. */
  failFirst?: number;
  port?: number;
  /** Never answer (the sender's timeout is all that ends the request): a hanging endpoint. */
  hang?: boolean;
  /** Answer each request after this many milliseconds: a slow endpoint. */
  delayMs?: number;
}

/**
 * A loopback webhook receiver; `failFirst` answers 500 to that many requests first, `hang` never
 * answers, `delayMs` answers late. `inFlight`/`maxInFlight` count requests being answered.
 */
export async function webhookReceiver(options: WebhookReceiverOptions = {}) {
  const received: ReceivedWebhook[] = [];
  const attempts: string[] = [];
  let failures = options.failFirst ?? 0;
  const state = { inFlight: 0, maxInFlight: 0 };
  const server: Server = createServer((req, res) => {
    let body = '';
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    let done = false;
    const finish = () => {
      if (!done) (done = true), state.inFlight--;
    };
    res.on('close', finish);
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      attempts.push(String(req.headers['webhook-id']));
      if (options.hang) return;
      const answer = () => {
        if (failures > 0) {
          failures--;
          res.writeHead(500).end('try later');
          return;
        }
        received.push({ headers: req.headers as Record<string, string>, body, json: JSON.parse(body) });
        res.writeHead(204).end();
      };
      if (options.delayMs) setTimeout(answer, options.delayMs);
      else answer();
    });
  });
  await new Promise<void>((r) => server.listen(options.port ?? 0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    received,
    attempts,
    /** Requests being answered now, and the most at any one time. */
    get inFlight() {
      return state.inFlight;
    },
    get maxInFlight() {
      return state.maxInFlight;
    },
    /** From now on, answer 204. */
    recover: () => void (failures = 0),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
