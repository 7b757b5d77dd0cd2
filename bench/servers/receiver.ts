/**
 * The soak's webhook endpoint: answers every delivery 204 at once (a fast, healthy receiver, so
 * the outbox backlog measures the service's dispatcher, not the endpoint) and counts them.
 * GET /count → {"received": n}. Usage: node dist/bench/servers/receiver.js <port>
 */
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
let received = 0;

createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ received }));
    return;
  }
  req.resume();
  req.on('end', () => {
    received++;
    res.writeHead(204);
    res.end();
  });
}).listen(port, '127.0.0.1', () => console.log(`webhook receiver on :${port}`));
