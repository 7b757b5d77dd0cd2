import type { Server } from 'node:http';
import type { Express } from 'express';

/** Listens on a free loopback port; returns the origin and a close function. */
export async function listen(app: Express): Promise<{ base: string; port: number; close(): Promise<void> }> {
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as { port: number };
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
