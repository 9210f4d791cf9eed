// The Watch stream's events as typed values, discriminated by `type` (which
// is also the name VisionClient emits them under).

import type { LeaseMessage, WatchEventMessage } from './proto';

/** A lease as the daemon describes it. Ids are strings (uint64 on the wire). */
export interface LeaseInfo {
  leaseId: string;
  model: string;
  /** The GPU's index on the node (NVML's); see `Lease.cudaDevice` for this process's. */
  gpuIndex: number;
  gpuUuid: string;
  /** The model was resident and ready when the admission was placed. */
  warm: boolean;
  /** Between asking and being granted (queue wait plus load). */
  waitedMs: number;
  ttlMs: number;
  /** Where the node's model server serves the model ("" without one). */
  runtimeEndpoint: string;
  /**
   * The model server's name for the model (Triton's: the catalog's
   * runtime_name, else its name), what inference requests to
   * `runtimeEndpoint` name; "" without a model server.
   */
  runtimeModel: string;
  workingMib: number;
}

export function leaseInfo(m: LeaseMessage | null | undefined): LeaseInfo {
  return {
    leaseId: m?.leaseId ?? '0',
    model: m?.model ?? '',
    gpuIndex: m?.gpuIndex ?? 0,
    gpuUuid: m?.gpuUuid ?? '',
    warm: m?.warm ?? false,
    waitedMs: Number(m?.waitedMs ?? 0),
    ttlMs: Number(m?.ttlMs ?? 0),
    runtimeEndpoint: m?.runtimeEndpoint ?? '',
    runtimeModel: m?.runtimeModel ?? '',
    workingMib: Number(m?.workingMib ?? 0),
  };
}

interface Head {
  /** Increases by one per event the daemon emits (gaps: not for this caller). */
  seq: number;
  /** Milliseconds since the daemon started. */
  atMs: number;
  /** Events this stream missed just before this one. */
  missed: number;
}

export interface LeaseEvent extends Head {
  type: 'leaseGranted' | 'leaseReleased' | 'leaseExpired' | 'leaseRevoked';
  lease: LeaseInfo;
  /** Why a lease was revoked (gpu_unhealthy, allocation_released); else "". */
  reason: string;
}

export interface ModelEvent extends Head {
  type: 'modelLoading' | 'modelLoaded' | 'modelEvicted' | 'modelLoadFailed';
  model: string;
  gpuIndex: number;
  gpuUuid: string;
  weightsMib: number;
  /** Evicted: why; failed: the error. */
  reason: string;
  /** Load duration (modelLoaded, modelLoadFailed). */
  durationMs: number;
}

export interface GpuHealthEvent extends Head {
  type: 'gpuHealth';
  gpuIndex: number;
  gpuUuid: string;
  healthy: boolean;
  reason: string;
}

/** The queue depth; every stream starts with one. */
export interface QueueEvent extends Head {
  type: 'queue';
  queued: number;
  waitingOnLoad: number;
}

/** A queued admission of this pod ended without a lease. */
export interface AdmissionRejectedEvent extends Head {
  type: 'admissionRejected';
  model: string;
  /** The outcome label (deadline_exceeded, load_failed, …). */
  reason: string;
  /** The status code the waiting call got, as gRPC spells it (DEADLINE_EXCEEDED, UNAVAILABLE, …). */
  code: string;
}

export interface PoolEvent extends Head {
  type: 'pool';
  gpuIndex: number;
  gpuUuid: string;
  overcommitted: boolean;
  committedMib: number;
  usableMib: number;
}

export interface KubeletEvent extends Head {
  type: 'kubelet';
  resource: string;
  registered: boolean;
  message: string;
}

/**
 * The node's model runtime stopped answering (`reachable` false: admissions
 * are refused UNAVAILABLE until it answers again), answers again, or,
 * answering throughout, was changed directly (`drifted`: models loaded or
 * unloaded in it behind the daemon's back; the ledger followed).
 */
export interface RuntimeEvent extends Head {
  type: 'runtime';
  kind: string;
  reachable: boolean;
  reason: string;
  /** On its return or a drift: copies adopted, and copies it had lost (their leases revoked). */
  adopted: number;
  dropped: number;
  /** Reachable throughout: `adopted` and `dropped` count the drift. */
  drifted: boolean;
}

/** A measured copy occupies more than its catalog entry says (> 10 %). */
export interface ModelOutgrewCatalogEvent extends Head {
  type: 'modelOutgrewCatalog';
  model: string;
  gpuIndex: number;
  gpuUuid: string;
  catalogMib: number;
  measuredMib: number;
}

/** An event of a newer daemon that this client does not know. */
export interface UnknownEvent extends Head {
  type: 'unknown';
  kind: string;
}

export type VisionEvent =
  | LeaseEvent
  | ModelEvent
  | GpuHealthEvent
  | QueueEvent
  | AdmissionRejectedEvent
  | PoolEvent
  | KubeletEvent
  | RuntimeEvent
  | ModelOutgrewCatalogEvent
  | UnknownEvent;

const LEASE_KINDS = {
  leaseGranted: 'leaseGranted',
  leaseReleased: 'leaseReleased',
  leaseExpired: 'leaseExpired',
  leaseRevoked: 'leaseRevoked',
} as const;
const MODEL_KINDS = {
  modelLoading: 'modelLoading',
  modelLoaded: 'modelLoaded',
  modelEvicted: 'modelEvicted',
  modelLoadFailed: 'modelLoadFailed',
} as const;

/** The typed event for a wire event. */
export function fromWire(ev: WatchEventMessage): VisionEvent {
  const head: Head = { seq: Number(ev.seq), atMs: Number(ev.atMs), missed: Number(ev.missed) };
  const kind = ev.event ?? '';
  if (kind in LEASE_KINDS) {
    const le = ev[kind as keyof typeof LEASE_KINDS];
    return { ...head, type: LEASE_KINDS[kind as keyof typeof LEASE_KINDS], lease: leaseInfo(le?.lease), reason: le?.reason ?? '' };
  }
  if (kind in MODEL_KINDS) {
    const me = ev[kind as keyof typeof MODEL_KINDS];
    return {
      ...head,
      type: MODEL_KINDS[kind as keyof typeof MODEL_KINDS],
      model: me?.model ?? '',
      gpuIndex: me?.gpuIndex ?? 0,
      gpuUuid: me?.gpuUuid ?? '',
      weightsMib: Number(me?.weightsMib ?? 0),
      reason: me?.reason ?? '',
      durationMs: Number(me?.durationMs ?? 0),
    };
  }
  switch (kind) {
    case 'gpuHealth': {
      const g = ev.gpuHealth;
      return { ...head, type: 'gpuHealth', gpuIndex: g?.gpuIndex ?? 0, gpuUuid: g?.gpuUuid ?? '', healthy: g?.healthy ?? false, reason: g?.reason ?? '' };
    }
    case 'queue':
      return { ...head, type: 'queue', queued: ev.queue?.queued ?? 0, waitingOnLoad: ev.queue?.waitingOnLoad ?? 0 };
    case 'admissionRejected':
      return {
        ...head,
        type: 'admissionRejected',
        model: ev.admissionRejected?.model ?? '',
        reason: ev.admissionRejected?.reason ?? '',
        code: ev.admissionRejected?.code ?? '',
      };
    case 'pool': {
      const p = ev.pool;
      return {
        ...head,
        type: 'pool',
        gpuIndex: p?.gpuIndex ?? 0,
        gpuUuid: p?.gpuUuid ?? '',
        overcommitted: p?.overcommitted ?? false,
        committedMib: Number(p?.committedMib ?? 0),
        usableMib: Number(p?.usableMib ?? 0),
      };
    }
    case 'kubelet': {
      const k = ev.kubelet;
      return { ...head, type: 'kubelet', resource: k?.resource ?? '', registered: k?.registered ?? false, message: k?.message ?? '' };
    }
    case 'runtime': {
      const r = ev.runtime;
      return {
        ...head,
        type: 'runtime',
        kind: r?.kind ?? '',
        reachable: r?.reachable ?? false,
        reason: r?.reason ?? '',
        adopted: r?.adopted ?? 0,
        dropped: r?.dropped ?? 0,
        drifted: r?.drifted ?? false,
      };
    }
    case 'modelOutgrewCatalog': {
      const m = ev.modelOutgrewCatalog;
      return {
        ...head,
        type: 'modelOutgrewCatalog',
        model: m?.model ?? '',
        gpuIndex: m?.gpuIndex ?? 0,
        gpuUuid: m?.gpuUuid ?? '',
        catalogMib: Number(m?.catalogMib ?? 0),
        measuredMib: Number(m?.measuredMib ?? 0),
      };
    }
    default:
      return { ...head, type: 'unknown', kind };
  }
}
