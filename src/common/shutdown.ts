import { Injectable, type BeforeApplicationShutdown } from '@nestjs/common';

/**
 * Whether this instance is shutting down. Responses sent while closing carry `Connection: close`,
 * so answered long-polls do not keep sockets open and the HTTP server can finish closing.
 */
@Injectable()
export class ShutdownState implements BeforeApplicationShutdown {
  closing = false;
  private readonly listeners = new Set<() => void>();

  /** Runs `fn` when shutdown begins (e.g. to end an SSE stream); returns a function that unregisters it. */
  onClosing(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  beforeApplicationShutdown(): void {
    this.closing = true;
    for (const fn of this.listeners) fn();
  }
}
