import { createServer, type Server } from 'node:http';

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: string;
  json: { id: string; type: string; data: Record<string, unknown> };
}

/** A loopback webhook receiver; `failFirst` answers 500 to that many requests first. */
export async function webhookReceiver(options: { failFirst?: number; port?: number } = {}) {
  const received: ReceivedWebhook[] = [];
  const attempts: string[] = [];
  let failures = options.failFirst ?? 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      attempts.push(String(req.headers['webhook-id']));
      if (failures > 0) {
        failures--;
        res.writeHead(500).end('try later');
        return;
      }
      received.push({ headers: req.headers as Record<string, string>, body, json: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(options.port ?? 0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    received,
    attempts,
    /** From now on, answer 204. */
    recover: () => void (failures = 0),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
