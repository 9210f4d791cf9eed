// A held lease: its keep-alive loop and how it ends.

import type { AdmissionClient, LeaseMessage } from './proto';
import { LeaseLostError, codeName, isServiceError } from './errors';
import { type LeaseInfo, leaseInfo } from './events';

/** How long Release and KeepAlive calls may take. */
export const CALL_TIMEOUT_MS = 5000;
/** After a failed KeepAlive, how soon to try again (the lease may still be valid). */
const KEEPALIVE_RETRY_MS = 250;

/** What a Lease needs from its client. */
export interface LeaseOwner {
  readonly stub: AdmissionClient;
  readonly token: string;
  leaseEnded(lease: Lease, ok: boolean): void;
  leaseLost(lease: Lease, reason: string): void;
}

function unary<Res>(invoke: (cb: (err: Error | null, res?: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

function deadline(ms: number): Date {
  return new Date(Date.now() + ms);
}

/**
 * GPU memory for one task, kept alive until released. If the daemon takes it
 * back (its GPU failed, the pod's allocation went) or it cannot be renewed
 * before it expires, `signal` is aborted with a `LeaseLostError`, `lost` turns
 * true, and `check()` and `release()` throw.
 */
export class Lease implements LeaseInfo {
  readonly leaseId: string;
  readonly model: string;
  readonly gpuIndex: number;
  readonly gpuUuid: string;
  readonly warm: boolean;
  readonly waitedMs: number;
  readonly ttlMs: number;
  readonly runtimeEndpoint: string;
  readonly runtimeModel: string;
  readonly workingMib: number;
  /**
   * The CUDA device index of the lease's GPU in this process
   * (NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES applied), or null when
   * this process cannot see it.
   */
  readonly cudaDevice: number | null;
  /** Aborted (with a LeaseLostError as its reason) when the lease is lost. */
  readonly signal: AbortSignal;
  /** When the lease was granted (performance.now() clock). */
  readonly grantedAt: number;

  private readonly owner: LeaseOwner;
  private readonly controller = new AbortController();
  private held = true;
  private expiresAt: number;
  private timer: NodeJS.Timeout | undefined;
  private renewCount = 0;
  private lostWith: LeaseLostError | undefined;
  private readonly lostListeners: ((e: LeaseLostError) => void)[] = [];

  constructor(owner: LeaseOwner, message: LeaseMessage, cudaDevice: number | null) {
    const info = leaseInfo(message);
    this.leaseId = info.leaseId;
    this.model = info.model;
    this.gpuIndex = info.gpuIndex;
    this.gpuUuid = info.gpuUuid;
    this.warm = info.warm;
    this.waitedMs = info.waitedMs;
    this.ttlMs = info.ttlMs;
    this.runtimeEndpoint = info.runtimeEndpoint;
    this.runtimeModel = info.runtimeModel;
    this.workingMib = info.workingMib;
    this.cudaDevice = cudaDevice;
    this.owner = owner;
    this.signal = this.controller.signal;
    this.grantedAt = performance.now();
    this.expiresAt = this.grantedAt + Number(message.expiresInMs);
  }

  /** True once the lease is lost; `lostReason` says why. */
  get lost(): boolean {
    return this.lostWith !== undefined;
  }

  get lostReason(): string | undefined {
    return this.lostWith?.reason;
  }

  /** KeepAlives that succeeded so far. */
  get renewals(): number {
    return this.renewCount;
  }

  /** Throws `LeaseLostError` if the lease has been lost. */
  check(): void {
    if (this.lostWith) throw this.lostWith;
  }

  /** Ends the lease (idempotent). Rejects with `LeaseLostError` if it had been lost. */
  async release(): Promise<void> {
    await this.end(true);
    this.check();
  }

  /** The lease as plain data. */
  toJSON(): LeaseInfo & { cudaDevice: number | null; lost: boolean } {
    return {
      leaseId: this.leaseId,
      model: this.model,
      gpuIndex: this.gpuIndex,
      gpuUuid: this.gpuUuid,
      warm: this.warm,
      waitedMs: this.waitedMs,
      ttlMs: this.ttlMs,
      runtimeEndpoint: this.runtimeEndpoint,
      runtimeModel: this.runtimeModel,
      workingMib: this.workingMib,
      cudaDevice: this.cudaDevice,
      lost: this.lost,
    };
  }

  /** @internal Calls `fn` once, when the lease is lost. */
  onLost(fn: (e: LeaseLostError) => void): void {
    if (this.lostWith) fn(this.lostWith);
    else this.lostListeners.push(fn);
  }

  /** @internal */
  start(): void {
    this.schedule(this.period());
  }

  /** @internal Renew now (the Watch stream may have missed a revocation). */
  poke(): void {
    if (this.held && !this.lost) this.schedule(0);
  }

  /** @internal */
  setLost(reason: string, force = false): void {
    if (this.lostWith || (!this.held && !force)) return;
    this.lostWith = new LeaseLostError(this.leaseId, reason);
    this.stopTimer();
    this.controller.abort(this.lostWith);
    this.owner.leaseLost(this, reason);
    for (const fn of this.lostListeners.splice(0)) fn(this.lostWith);
  }

  /** @internal Releases (unless lost) and records the outcome; idempotent. */
  async end(ok: boolean): Promise<void> {
    if (!this.held) return;
    this.held = false;
    this.stopTimer();
    if (!this.lost) {
      try {
        await unary((cb) =>
          this.owner.stub.release({ token: this.owner.token, leaseId: this.leaseId }, { deadline: deadline(CALL_TIMEOUT_MS) }, cb),
        );
      } catch (e) {
        const code = isServiceError(e) ? codeName(e.code) : 'UNKNOWN';
        if (code === 'NOT_FOUND' || code === 'PERMISSION_DENIED') {
          this.setLost(`the daemon no longer had it at release (${code}: ${detailsOf(e)}): revoked or expired`, true);
        } else {
          process.emitWarning(
            `could not release lease ${this.leaseId} (${code}: ${detailsOf(e)}); the daemon reclaims it within ${this.ttlMs} ms`,
            'VisionNodeWarning',
          );
        }
      }
    }
    this.owner.leaseEnded(this, ok && !this.lost);
  }

  private period(): number {
    return Math.max(this.ttlMs, 30) / 3;
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    this.stopTimer();
    // Not unref'd: a held lease is in use, like an open socket (release it, or close the client).
    this.timer = setTimeout(() => void this.renew(), ms);
  }

  private async renew(): Promise<void> {
    this.timer = undefined;
    if (!this.held || this.lost) return;
    const sent = performance.now();
    try {
      const reply = await unary<{ expiresInMs: string }>((cb) =>
        this.owner.stub.keepAlive(
          { token: this.owner.token, leaseId: this.leaseId },
          { deadline: deadline(Math.max(50, Math.min(CALL_TIMEOUT_MS, this.expiresAt - sent))) },
          cb,
        ),
      );
      if (!this.held || this.lost) return;
      this.expiresAt = sent + Number(reply.expiresInMs);
      this.renewCount += 1;
      this.schedule(this.period());
    } catch (e) {
      if (!this.held || this.lost) return;
      const code = isServiceError(e) ? codeName(e.code) : 'UNKNOWN';
      if (code === 'NOT_FOUND' || code === 'PERMISSION_DENIED') {
        this.setLost(`the daemon no longer knows it (${code}: ${detailsOf(e)}): revoked or expired`);
      } else if (performance.now() >= this.expiresAt) {
        this.setLost(`it could not be renewed before it expired (last KeepAlive: ${code}: ${detailsOf(e)})`);
      } else {
        this.schedule(Math.min(this.period(), KEEPALIVE_RETRY_MS));
      }
    }
  }
}

function detailsOf(e: unknown): string {
  return isServiceError(e) ? e.details : String(e);
}

export { unary, deadline };
