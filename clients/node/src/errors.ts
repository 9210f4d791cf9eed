// Errors, one class per thing a caller may want to handle differently. Each
// carries the gRPC status code's name (`code`) and the daemon's message
// (`details`), which says what to do.

import { status as Status, type ServiceError } from '@grpc/grpc-js';

export class VisionError extends Error {
  override name = 'VisionError';
  /** The gRPC status code's name, e.g. `NOT_FOUND` ("" when not from the daemon). */
  readonly code: string;
  /** The daemon's message. */
  readonly details: string;

  constructor(message: string, code = '', details = '', options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
  }
}

/** NOT_FOUND: the catalog has no such model (the message lists the known ones). Fix the name. */
export class ModelNotFoundError extends VisionError {
  override name = 'ModelNotFoundError';
}

/** FAILED_PRECONDITION: the model can never fit on this node's GPUs. Smaller model, bigger node. */
export class ModelTooLargeError extends VisionError {
  override name = 'ModelTooLargeError';
}

/** RESOURCE_EXHAUSTED until the timeout ran out (retried meanwhile): the node is full. Allow longer, or use another node. */
export class NodeBusyError extends VisionError {
  override name = 'NodeBusyError';
}

/** DEADLINE_EXCEEDED: no lease within the timeout. Allow longer, raise the priority, or use another node. */
export class AdmissionTimeoutError extends VisionError {
  override name = 'AdmissionTimeoutError';
}

/** PERMISSION_DENIED: missing or unknown token. Use the pod's VISION_TOKEN (`VisionClient.fromEnv()`). */
export class PermissionDeniedError extends VisionError {
  override name = 'PermissionDeniedError';
}

/** INVALID_ARGUMENT: e.g. a task type the model does not serve. */
export class InvalidRequestError extends VisionError {
  override name = 'InvalidRequestError';
}

/** UNAVAILABLE until the timeout ran out: daemon down or restarting, no healthy GPU, or the load failed. */
export class UnavailableError extends VisionError {
  override name = 'UnavailableError';
}

/**
 * The lease ended while the task held it: revoked (its GPU failed, the pod's
 * allocation was released) or expired (it could not be kept alive). The GPU
 * memory is no longer reserved: stop using the GPU and run the task again.
 */
export class LeaseLostError extends VisionError {
  override name = 'LeaseLostError';
  readonly leaseId: string;
  readonly reason: string;

  constructor(leaseId: string, reason: string) {
    super(`lease ${leaseId} was lost: ${reason}`, '', reason);
    this.leaseId = leaseId;
    this.reason = reason;
  }
}

/** `VisionClient.fromEnv()` found no VISION_SOCKET or token: the container has no vision.ai device. */
export class MissingEnvironmentError extends VisionError {
  override name = 'MissingEnvironmentError';
}

const BY_CODE: Record<string, new (m: string, c: string, d: string, o?: { cause?: unknown }) => VisionError> = {
  NOT_FOUND: ModelNotFoundError,
  FAILED_PRECONDITION: ModelTooLargeError,
  RESOURCE_EXHAUSTED: NodeBusyError,
  DEADLINE_EXCEEDED: AdmissionTimeoutError,
  PERMISSION_DENIED: PermissionDeniedError,
  INVALID_ARGUMENT: InvalidRequestError,
  UNAVAILABLE: UnavailableError,
};

/** The name of a gRPC status code (`14` → `UNAVAILABLE`). */
export function codeName(code: number | undefined): string {
  return code === undefined ? 'UNKNOWN' : (Status[code] ?? 'UNKNOWN');
}

export function isServiceError(e: unknown): e is ServiceError {
  return e instanceof Error && typeof (e as Partial<ServiceError>).code === 'number';
}

/** The VisionError for a failed call; `what` names it. */
export function fromServiceError(e: unknown, what: string, note = ''): VisionError {
  if (!isServiceError(e)) {
    return new VisionError(`${what}: ${String(e)}`, '', '', { cause: e });
  }
  const code = codeName(e.code);
  const details = e.details ?? '';
  const Cls = BY_CODE[code] ?? VisionError;
  return new Cls(`${what}: ${code}: ${details}${note ? ` (${note})` : ''}`, code, details, { cause: e });
}
