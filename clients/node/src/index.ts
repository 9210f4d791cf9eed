// vision-node-client: run vision tasks on a Kubernetes node's GPUs through
// vision-node-daemon. See README.md.

export { VisionClient } from './client';
export type {
  AdmitOptions,
  PerformanceStats,
  TaskFailure,
  TaskResult,
  VisionClientEvents,
  VisionClientOptions,
} from './client';
export { Lease } from './lease';
export { cudaDeviceIndex } from './cuda';
export type { NodeGpu } from './cuda';
export {
  AdmissionTimeoutError,
  InvalidRequestError,
  LeaseLostError,
  MissingEnvironmentError,
  ModelNotFoundError,
  ModelTooLargeError,
  NodeBusyError,
  PermissionDeniedError,
  UnavailableError,
  VisionError,
} from './errors';
export { fromWire } from './events';
export type {
  AdmissionRejectedEvent,
  GpuHealthEvent,
  KubeletEvent,
  LeaseEvent,
  LeaseInfo,
  ModelEvent,
  ModelOutgrewCatalogEvent,
  PoolEvent,
  QueueEvent,
  RuntimeEvent,
  UnknownEvent,
  VisionEvent,
} from './events';
export { DEFAULT_RETRY } from './retry';
export type { RetryPolicy } from './retry';
export type { ModelInfo, StatusResponse } from './proto';
