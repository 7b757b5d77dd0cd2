import { Injectable } from '@nestjs/common';

/** The time source. Injected everywhere time matters, so tests can freeze or move it. */
@Injectable()
export class Clock {
  private offsetMs = 0;

  /** Milliseconds since the epoch. */
  now(): number {
    return Date.now() + this.offsetMs;
  }

  nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  /** Test support: move the clock forward (or back). */
  advance(ms: number): void {
    this.offsetMs += ms;
  }

  reset(): void {
    this.offsetMs = 0;
  }
}
