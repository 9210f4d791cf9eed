// When to try an admission again: exponential backoff with full jitter,
// bounded by the caller's timeout. Clock and randomness come in as arguments.

/** Codes worth another attempt: queue full / no slot (RESOURCE_EXHAUSTED), daemon restarting or no healthy GPU (UNAVAILABLE). */
export const RETRYABLE: ReadonlySet<string> = new Set(['RESOURCE_EXHAUSTED', 'UNAVAILABLE']);

/** How much longer than the admission's own timeout the call may take (the daemon's DEADLINE_EXCEEDED says why; let it arrive first). */
export const RPC_GRACE_MS = 2000;

export interface RetryPolicy {
  /** Largest first wait. Default 50. */
  initialBackoffMs: number;
  /** Largest wait. Default 2000. */
  maxBackoffMs: number;
  /** Growth of the largest wait per attempt. Default 2. */
  multiplier: number;
}

export const DEFAULT_RETRY: RetryPolicy = { initialBackoffMs: 50, maxBackoffMs: 2000, multiplier: 2 };

export function checkPolicy(p: RetryPolicy): RetryPolicy {
  if (!(p.initialBackoffMs > 0) || !(p.maxBackoffMs >= p.initialBackoffMs) || !(p.multiplier >= 1)) {
    throw new RangeError('retry policy: need 0 < initialBackoffMs <= maxBackoffMs and multiplier >= 1');
  }
  return p;
}

/** The largest wait after failed attempt `attempt` (from 0). */
export function backoffCap(p: RetryPolicy, attempt: number): number {
  return Math.min(p.maxBackoffMs, p.initialBackoffMs * p.multiplier ** Math.min(attempt, 64));
}

/** The attempts of one admission with `timeoutMs` (undefined: the daemon's default, once), from `now`. */
export class Attempts {
  private readonly deadline: number | undefined;
  /** Failed attempts so far. */
  failures = 0;

  constructor(
    private readonly policy: RetryPolicy,
    timeoutMs: number | undefined,
    now: number,
    private readonly random: () => number = Math.random,
  ) {
    if (timeoutMs !== undefined && !(timeoutMs >= 0)) {
      throw new RangeError(`timeoutMs must be >= 0, got ${timeoutMs}`);
    }
    this.deadline = timeoutMs === undefined ? undefined : now + timeoutMs;
  }

  /** The request's `timeoutMs` for an attempt at `now` (undefined: the daemon's default). */
  requestTimeoutMs(now: number): number | undefined {
    return this.deadline === undefined ? undefined : Math.max(0, Math.floor(this.deadline - now));
  }

  /** The call's deadline for an attempt at `now`, as a Date (undefined: none). */
  callDeadline(now: number): Date | undefined {
    const ms = this.requestTimeoutMs(now);
    return ms === undefined ? undefined : new Date(Date.now() + ms + RPC_GRACE_MS);
  }

  /** Milliseconds to wait after an attempt failed with `code` at `now`, or undefined to give up. */
  afterFailure(code: string, now: number): number | undefined {
    this.failures += 1;
    if (!RETRYABLE.has(code) || this.deadline === undefined) {
      return undefined;
    }
    const delay = this.random() * backoffCap(this.policy, this.failures - 1);
    return now + delay >= this.deadline ? undefined : delay;
  }
}
