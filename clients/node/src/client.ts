// VisionClient: the shape of the seed service's RustVisionResourceManager
// (initialize / executeTask / getPerformanceStats / EventEmitter / close)
// on the daemon's gRPC API.

import { EventEmitter } from 'node:events';

import type * as grpc from '@grpc/grpc-js';

import { cudaDeviceIndex, type NodeGpu } from './cuda';
import { MissingEnvironmentError, VisionError, codeName, fromServiceError, isServiceError } from './errors';
import {
  type AdmissionRejectedEvent,
  type GpuHealthEvent,
  type KubeletEvent,
  type LeaseEvent,
  type ModelEvent,
  type PoolEvent,
  type QueueEvent,
  type UnknownEvent,
  type VisionEvent,
  fromWire,
} from './events';
import { CALL_TIMEOUT_MS, Lease, type LeaseOwner, deadline, unary } from './lease';
import { type AdmissionClient, type LeaseMessage, type ModelInfo, type StatusResponse, admissionClient } from './proto';
import { Attempts, DEFAULT_RETRY, type RetryPolicy, checkPolicy } from './retry';

export interface VisionClientOptions {
  /** The daemon's task socket: VISION_SOCKET in a pod. */
  socket: string;
  /** This pod's token: VISION_TOKEN in a pod. */
  token: string;
  /** Backoff between admission attempts. */
  retry?: Partial<RetryPolicy>;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

export interface AdmitOptions {
  /** Bounds the whole wait (queue, load, retries), ms. Default 30000; 0 never queues; null: the daemon's default, once. */
  timeoutMs?: number | null;
  /** Higher runs first. Default 0. */
  priority?: number;
}

/** What `taskCompleted` carries. */
export interface TaskResult<T = unknown> {
  model: string;
  taskType: string;
  leaseId: string;
  gpuIndex: number;
  gpuUuid: string;
  cudaDevice: number | null;
  warm: boolean;
  /** From asking to holding the lease, retries included. */
  waitMs: number;
  /** How long the callback held the lease. */
  executionMs: number;
  result: T;
}

/** What `taskFailed` carries. */
export interface TaskFailure {
  model: string;
  taskType: string;
  error: Error;
  /** Set when the failure came after the lease was granted. */
  leaseId?: string;
  waitMs: number;
  executionMs?: number;
}

/** This client's tasks so far (the node's: `status()`). */
export interface PerformanceStats {
  /** Tasks that ended: run (successfully or not) or refused. */
  totalTasks: number;
  successfulTasks: number;
  failedTasks: number;
  /** successfulTasks / totalTasks; 0 before the first. */
  successRate: number;
  /** Mean time from asking to holding a lease, retries included. */
  avgWaitMs: number;
  /** Mean time a lease was held. */
  avgExecutionMs: number;
  /** Warm admissions / granted admissions. */
  warmRatio: number;
  admissionFailures: number;
  leasesLost: number;
  /** Admission attempts repeated after RESOURCE_EXHAUSTED / UNAVAILABLE. */
  retries: number;
  /** Leases held right now. */
  inFlight: number;
}

/** The events a VisionClient emits, with their arguments. */
export interface VisionClientEvents {
  taskCompleted: [TaskResult];
  taskFailed: [TaskFailure];
  /** A lease of this client was lost (revoked or expired). */
  leaseLost: [{ leaseId: string; model: string; gpuUuid: string; reason: string }];
  /** From the daemon's Watch stream: */
  leaseGranted: [LeaseEvent];
  leaseReleased: [LeaseEvent];
  leaseExpired: [LeaseEvent];
  leaseRevoked: [LeaseEvent];
  modelLoading: [ModelEvent];
  modelLoaded: [ModelEvent];
  modelEvicted: [ModelEvent];
  modelLoadFailed: [ModelEvent];
  gpuHealth: [GpuHealthEvent];
  queue: [QueueEvent];
  admissionRejected: [AdmissionRejectedEvent];
  pool: [PoolEvent];
  kubelet: [KubeletEvent];
  unknown: [UnknownEvent];
  /** An admission attempt was refused with RESOURCE_EXHAUSTED / UNAVAILABLE and is tried again after `delayMs`. */
  retry: [{ model: string; code: string; attempt: number; delayMs: number }];
  /** Every Watch event, typed. */
  event: [VisionEvent];
  /** The Watch stream failed; it reconnects by itself. (Not `error`, which would throw without a listener.) */
  watchError: [VisionError];
}

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A connection to vision-node-daemon's task socket for one pod.
 *
 * ```ts
 * const vrm = VisionClient.fromEnv();
 * await vrm.initialize();
 * const boxes = await vrm.executeTask('yolo-v8n', 'detect', async (lease) => detect(lease.cudaDevice));
 * await vrm.close();
 * ```
 */
export class VisionClient extends EventEmitter<VisionClientEvents> implements LeaseOwner {
  /** @internal */
  readonly stub: AdmissionClient;
  /** @internal */
  readonly token: string;
  readonly socket: string;

  private readonly retry: RetryPolicy;
  private readonly leases = new Map<string, Lease>();
  private ready: Promise<void> | undefined;
  private watchCall: grpc.ClientReadableStream<unknown> | undefined;
  private watchFailures = 0;
  private watchOpened: Promise<void> | undefined;
  private onWatchOpen: (() => void) | undefined;
  private closed = false;
  private gpus: NodeGpu[] = [];
  private readonly counters = {
    granted: 0,
    warm: 0,
    ended: 0,
    succeeded: 0,
    refused: 0,
    lost: 0,
    retries: 0,
    waitMs: 0,
    holdMs: 0,
  };

  constructor(options: VisionClientOptions) {
    super();
    if (!options.token) throw new TypeError('token is required: the VISION_TOKEN of this pod');
    if (!options.socket) throw new TypeError('socket is required: the VISION_SOCKET of this pod');
    this.socket = options.socket;
    this.token = options.token;
    this.retry = checkPolicy({ ...DEFAULT_RETRY, ...options.retry });
    this.stub = admissionClient(options.socket, options.channelOptions);
  }

  /** The client for this container: VISION_SOCKET and VISION_TOKEN (or VISION_VRAM_TOKEN), as the device plugin set them. */
  static fromEnv(env: Readonly<Record<string, string | undefined>> = process.env, options: Partial<VisionClientOptions> = {}): VisionClient {
    const socket = env['VISION_SOCKET'] ?? '';
    const token = env['VISION_TOKEN'] || env['VISION_VRAM_TOKEN'] || '';
    const missing = [!socket && 'VISION_SOCKET', !token && 'VISION_TOKEN (or VISION_VRAM_TOKEN)'].filter(Boolean);
    if (missing.length) {
      throw new MissingEnvironmentError(
        `${missing.join(' and ')} not set: this container got no vision.ai device. Request one in its ` +
          'resources.limits (e.g. `vision.ai/slot: 1`), or pass { socket, token } (e.g. the dev daemon\'s ' +
          '.vision-dev/pods/agent.sock and .vision-dev/dev-token)',
      );
    }
    return new VisionClient({ ...options, socket, token });
  }

  /**
   * Waits (up to `timeoutMs`) until the daemon answers, learns the node's
   * GPUs, and opens the Watch stream behind the events and lease-loss
   * detection: once it resolves, no event is missed. Idempotent;
   * `executeTask` calls it when needed.
   */
  initialize(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return Promise.reject(new VisionError('the client is closed'));
    this.ready ??= (async () => {
      const until = deadline(options.timeoutMs ?? 30_000);
      try {
        await new Promise<void>((resolve, reject) => this.stub.waitForReady(until, (e) => (e ? reject(e) : resolve())));
        const s = await unary<StatusResponse>((cb) => this.stub.status({ token: this.token }, { deadline: until }, cb));
        this.gpus = s.gpus.map((g) => [g.index, g.uuid] as const);
      } catch (e) {
        this.ready = undefined;
        throw fromServiceError(e, `connecting to ${this.socket}`);
      }
      if (!this.watchOpened) {
        this.watchOpened = new Promise((resolve) => (this.onWatchOpen = resolve));
        this.startWatch();
      }
      // The stream opens with the queue depth: from then on nothing is missed.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new VisionError(`the Watch stream on ${this.socket} did not open in time`)),
          Math.max(0, until.getTime() - Date.now()),
        );
      });
      try {
        await Promise.race([this.watchOpened, late]);
      } catch (e) {
        this.ready = undefined;
        throw e;
      } finally {
        clearTimeout(timer);
      }
    })();
    return this.ready;
  }

  /**
   * Admits a task of `model`, runs `fn(lease)` while the lease is kept
   * alive, and releases it whether `fn` resolves or throws. Resolves with
   * `fn`'s result (and emits `taskCompleted`); rejects with the admission's
   * error, `fn`'s error, or `LeaseLostError` as soon as the lease is lost
   * (`lease.signal` is aborted then; emits `taskFailed`).
   */
  async executeTask<T>(model: string, taskType: string, fn: (lease: Lease) => Promise<T> | T, options: AdmitOptions = {}): Promise<T> {
    const asked = now();
    let lease: Lease;
    try {
      await this.initialize();
      lease = await this.admit(model, taskType, options);
    } catch (e) {
      this.emit('taskFailed', { model, taskType, error: e as Error, waitMs: now() - asked });
      throw e;
    }
    const waitMs = now() - asked;
    const started = now();
    let result: T | undefined;
    let error: unknown;
    try {
      const work = Promise.resolve().then(() => fn(lease));
      work.catch(() => undefined); // once the lease is lost, fn's own outcome is moot
      const lost = new Promise<never>((_, reject) => lease.onLost(reject));
      result = await Promise.race([work, lost]);
    } catch (e) {
      error = e;
    }
    await lease.end(error === undefined);
    if (error === undefined && lease.lost) {
      try {
        lease.check();
      } catch (e) {
        error = e;
      }
    }
    const executionMs = now() - started;
    if (error !== undefined) {
      this.emit('taskFailed', { model, taskType, error: error as Error, leaseId: lease.leaseId, waitMs, executionMs });
      throw error;
    }
    this.emit('taskCompleted', {
      model,
      taskType,
      leaseId: lease.leaseId,
      gpuIndex: lease.gpuIndex,
      gpuUuid: lease.gpuUuid,
      cudaDevice: lease.cudaDevice,
      warm: lease.warm,
      waitMs,
      executionMs,
      result,
    });
    return result as T;
  }

  /**
   * Waits for a lease and returns it, kept alive until `lease.release()`.
   * `timeoutMs` bounds the whole wait, retries of RESOURCE_EXHAUSTED (queue
   * full) and UNAVAILABLE (daemon restarting) with jittered exponential
   * backoff included. Rejects with a `VisionError` subclass when refused.
   */
  async admit(model: string, taskType = '', options: AdmitOptions = {}): Promise<Lease> {
    if (this.closed) throw new VisionError('the client is closed');
    const started = now();
    const timeoutMs = options.timeoutMs === undefined ? 30_000 : (options.timeoutMs ?? undefined);
    const attempts = new Attempts(this.retry, timeoutMs, started);
    let granted: LeaseMessage;
    for (;;) {
      const t = now();
      const waitMs = attempts.requestTimeoutMs(t);
      const request = {
        token: this.token,
        model,
        taskType,
        priority: options.priority ?? 0,
        ...(waitMs === undefined ? {} : { timeoutMs: waitMs }),
      };
      const callDeadline = attempts.callDeadline(t);
      try {
        const reply = await unary<{ lease: LeaseMessage | null }>((cb) =>
          this.stub.admit(request, callDeadline ? { deadline: callDeadline } : {}, cb),
        );
        if (!reply.lease) throw new VisionError('the daemon answered Admit without a lease');
        granted = reply.lease;
        break;
      } catch (e) {
        const code = isServiceError(e) ? codeName(e.code) : 'UNKNOWN';
        const delay = attempts.afterFailure(code, now());
        if (delay === undefined) {
          this.counters.refused += 1;
          const note =
            attempts.failures > 1 ? `gave up after ${attempts.failures} attempts in ${((now() - started) / 1000).toFixed(1)} s` : '';
          throw e instanceof VisionError ? e : fromServiceError(e, `admitting '${model}'`, note);
        }
        this.counters.retries += 1;
        this.emit('retry', { model, code, attempt: attempts.failures + 1, delayMs: delay });
        await sleep(delay);
        if (this.closed) throw new VisionError('the client was closed while admitting');
      }
    }
    const lease = new Lease(this, granted, await this.cudaDevice(granted));
    this.counters.granted += 1;
    this.counters.warm += Number(lease.warm);
    this.counters.waitMs += now() - started;
    this.leases.set(lease.leaseId, lease);
    lease.start();
    return lease;
  }

  /** This client's task counts and times. */
  getPerformanceStats(): PerformanceStats {
    const c = this.counters;
    const total = c.ended + c.refused;
    return {
      totalTasks: total,
      successfulTasks: c.succeeded,
      failedTasks: total - c.succeeded,
      successRate: total ? c.succeeded / total : 0,
      avgWaitMs: c.granted ? c.waitMs / c.granted : 0,
      avgExecutionMs: c.ended ? c.holdMs / c.ended : 0,
      warmRatio: c.granted ? c.warm / c.granted : 0,
      admissionFailures: c.refused,
      leasesLost: c.lost,
      retries: c.retries,
      inFlight: c.granted - c.ended,
    };
  }

  /** The node's status (GPUs, pool, resident models, queue) and this pod's leases. */
  async status(): Promise<StatusResponse> {
    try {
      return await unary<StatusResponse>((cb) => this.stub.status({ token: this.token }, { deadline: deadline(CALL_TIMEOUT_MS) }, cb));
    } catch (e) {
      throw fromServiceError(e, 'Status');
    }
  }

  /** The model catalog, with where each model is resident. */
  async models(): Promise<ModelInfo[]> {
    try {
      const r = await unary<{ models: ModelInfo[] }>((cb) => this.stub.listModels({}, { deadline: deadline(CALL_TIMEOUT_MS) }, cb));
      return r.models;
    } catch (e) {
      throw fromServiceError(e, 'ListModels');
    }
  }

  /** Releases leases still held, ends the Watch stream, closes the channel. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.leases.values()].map((l) => l.end(false)));
    this.closed = true;
    this.watchCall?.cancel();
    this.stub.close();
  }

  /** @internal */
  leaseEnded(lease: Lease, ok: boolean): void {
    this.leases.delete(lease.leaseId);
    this.counters.ended += 1;
    this.counters.succeeded += Number(ok);
    this.counters.holdMs += now() - lease.grantedAt;
  }

  /** @internal */
  leaseLost(lease: Lease, reason: string): void {
    this.counters.lost += 1;
    this.emit('leaseLost', { leaseId: lease.leaseId, model: lease.model, gpuUuid: lease.gpuUuid, reason });
  }

  private async cudaDevice(m: LeaseMessage): Promise<number | null> {
    if (!this.gpus.some(([, u]) => u === m.gpuUuid)) {
      try {
        const s = await this.status();
        this.gpus = s.gpus.map((g) => [g.index, g.uuid] as const);
      } catch {
        // Without the node's list, the lease's own GPU is all we know.
      }
    }
    return cudaDeviceIndex(m.gpuUuid, m.gpuIndex, this.gpus, process.env);
  }

  private startWatch(): void {
    if (this.closed) return;
    const call = this.stub.watch({ token: this.token });
    this.watchCall = call;
    let ended = false;
    const reconnect = (): void => {
      if (ended) return;
      ended = true;
      // Whatever happened while the stream was down, the renewals find out.
      for (const l of this.leases.values()) l.poke();
      if (this.closed) return;
      this.watchFailures += 1;
      setTimeout(() => this.startWatch(), Math.min(5000, 50 * 2 ** this.watchFailures)).unref();
    };
    call.on('data', (wire) => {
      this.watchFailures = 0;
      this.onWatchOpen?.();
      this.onWatchOpen = undefined;
      const ev = fromWire(wire);
      if (ev.missed > 0) for (const l of this.leases.values()) l.poke();
      if (ev.type === 'leaseRevoked' || ev.type === 'leaseExpired') {
        const lease = this.leases.get(ev.lease.leaseId);
        if (ev.type === 'leaseRevoked') lease?.setLost(`revoked by the daemon (${ev.reason || 'no reason given'})`);
        else lease?.setLost('expired: the daemon heard no KeepAlive in time');
      }
      this.emit('event', ev);
      (this.emit as (name: string, e: VisionEvent) => boolean)(ev.type, ev);
    });
    call.on('error', (e: unknown) => {
      if (!this.closed) this.emit('watchError', fromServiceError(e, 'Watch'));
      reconnect();
    });
    call.on('end', reconnect);
  }
}
