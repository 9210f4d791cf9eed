from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdmitRequest(_message.Message):
    __slots__ = ("token", "model", "task_type", "priority", "timeout_ms")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    token: str
    model: str
    task_type: str
    priority: int
    timeout_ms: int
    def __init__(self, token: _Optional[str] = ..., model: _Optional[str] = ..., task_type: _Optional[str] = ..., priority: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "model", "gpu_index", "gpu_uuid", "warm", "waited_ms", "expires_in_ms", "ttl_ms", "runtime_endpoint", "working_mib", "runtime_model")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    WAITED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    WORKING_MIB_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_MODEL_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    model: str
    gpu_index: int
    gpu_uuid: str
    warm: bool
    waited_ms: int
    expires_in_ms: int
    ttl_ms: int
    runtime_endpoint: str
    working_mib: int
    runtime_model: str
    def __init__(self, lease_id: _Optional[int] = ..., model: _Optional[str] = ..., gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., warm: bool = ..., waited_ms: _Optional[int] = ..., expires_in_ms: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., runtime_endpoint: _Optional[str] = ..., working_mib: _Optional[int] = ..., runtime_model: _Optional[str] = ...) -> None: ...

class AdmitResponse(_message.Message):
    __slots__ = ("lease",)
    LEASE_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("token", "lease_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    lease_id: int
    def __init__(self, token: _Optional[str] = ..., lease_id: _Optional[int] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KeepAliveRequest(_message.Message):
    __slots__ = ("token", "lease_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    lease_id: int
    def __init__(self, token: _Optional[str] = ..., lease_id: _Optional[int] = ...) -> None: ...

class KeepAliveResponse(_message.Message):
    __slots__ = ("expires_in_ms",)
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    expires_in_ms: int
    def __init__(self, expires_in_ms: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class ResidentModel(_message.Message):
    __slots__ = ("model", "weights_mib", "loading", "pins", "idle_ms", "catalog_mib")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_MIB_FIELD_NUMBER: _ClassVar[int]
    LOADING_FIELD_NUMBER: _ClassVar[int]
    PINS_FIELD_NUMBER: _ClassVar[int]
    IDLE_MS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_MIB_FIELD_NUMBER: _ClassVar[int]
    model: str
    weights_mib: int
    loading: bool
    pins: int
    idle_ms: int
    catalog_mib: int
    def __init__(self, model: _Optional[str] = ..., weights_mib: _Optional[int] = ..., loading: bool = ..., pins: _Optional[int] = ..., idle_ms: _Optional[int] = ..., catalog_mib: _Optional[int] = ...) -> None: ...

class GpuStatus(_message.Message):
    __slots__ = ("index", "uuid", "name", "healthy", "total_mib", "reserve_mib", "external_mib", "usable_mib", "carved_mib", "weights_mib", "working_mib", "free_mib", "overcommitted", "residents", "residents_omitted")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MIB_FIELD_NUMBER: _ClassVar[int]
    RESERVE_MIB_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_MIB_FIELD_NUMBER: _ClassVar[int]
    USABLE_MIB_FIELD_NUMBER: _ClassVar[int]
    CARVED_MIB_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_MIB_FIELD_NUMBER: _ClassVar[int]
    WORKING_MIB_FIELD_NUMBER: _ClassVar[int]
    FREE_MIB_FIELD_NUMBER: _ClassVar[int]
    OVERCOMMITTED_FIELD_NUMBER: _ClassVar[int]
    RESIDENTS_FIELD_NUMBER: _ClassVar[int]
    RESIDENTS_OMITTED_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    healthy: bool
    total_mib: int
    reserve_mib: int
    external_mib: int
    usable_mib: int
    carved_mib: int
    weights_mib: int
    working_mib: int
    free_mib: int
    overcommitted: bool
    residents: _containers.RepeatedCompositeFieldContainer[ResidentModel]
    residents_omitted: int
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., healthy: bool = ..., total_mib: _Optional[int] = ..., reserve_mib: _Optional[int] = ..., external_mib: _Optional[int] = ..., usable_mib: _Optional[int] = ..., carved_mib: _Optional[int] = ..., weights_mib: _Optional[int] = ..., working_mib: _Optional[int] = ..., free_mib: _Optional[int] = ..., overcommitted: bool = ..., residents: _Optional[_Iterable[_Union[ResidentModel, _Mapping]]] = ..., residents_omitted: _Optional[int] = ...) -> None: ...

class Counters(_message.Message):
    __slots__ = ("granted_warm", "granted_cold", "rejected", "released", "expired", "revoked", "loads_started", "loads_failed", "evictions", "outcomes")
    class OutcomesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GRANTED_WARM_FIELD_NUMBER: _ClassVar[int]
    GRANTED_COLD_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    LOADS_STARTED_FIELD_NUMBER: _ClassVar[int]
    LOADS_FAILED_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    granted_warm: int
    granted_cold: int
    rejected: int
    released: int
    expired: int
    revoked: int
    loads_started: int
    loads_failed: int
    evictions: int
    outcomes: _containers.ScalarMap[str, int]
    def __init__(self, granted_warm: _Optional[int] = ..., granted_cold: _Optional[int] = ..., rejected: _Optional[int] = ..., released: _Optional[int] = ..., expired: _Optional[int] = ..., revoked: _Optional[int] = ..., loads_started: _Optional[int] = ..., loads_failed: _Optional[int] = ..., evictions: _Optional[int] = ..., outcomes: _Optional[_Mapping[str, int]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node", "gpu_backend", "gpus", "queued", "waiting_on_load", "active_leases", "leases", "counters", "slots", "runtime", "memory", "leases_omitted")
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_BACKEND_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    WAITING_ON_LOAD_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_LEASES_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    LEASES_OMITTED_FIELD_NUMBER: _ClassVar[int]
    node: str
    gpu_backend: str
    gpus: _containers.RepeatedCompositeFieldContainer[GpuStatus]
    queued: int
    waiting_on_load: int
    active_leases: int
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    counters: Counters
    slots: int
    runtime: RuntimeStatus
    memory: _containers.RepeatedCompositeFieldContainer[ModelMemory]
    leases_omitted: int
    def __init__(self, node: _Optional[str] = ..., gpu_backend: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[GpuStatus, _Mapping]]] = ..., queued: _Optional[int] = ..., waiting_on_load: _Optional[int] = ..., active_leases: _Optional[int] = ..., leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., counters: _Optional[_Union[Counters, _Mapping]] = ..., slots: _Optional[int] = ..., runtime: _Optional[_Union[RuntimeStatus, _Mapping]] = ..., memory: _Optional[_Iterable[_Union[ModelMemory, _Mapping]]] = ..., leases_omitted: _Optional[int] = ...) -> None: ...

class RuntimeStatus(_message.Message):
    __slots__ = ("kind", "reachable", "reason", "unreachable_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    reachable: bool
    reason: str
    unreachable_ms: int
    def __init__(self, kind: _Optional[str] = ..., reachable: bool = ..., reason: _Optional[str] = ..., unreachable_ms: _Optional[int] = ...) -> None: ...

class ModelMemory(_message.Message):
    __slots__ = ("model", "catalog_mib", "measured_mib", "returned_mib")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CATALOG_MIB_FIELD_NUMBER: _ClassVar[int]
    MEASURED_MIB_FIELD_NUMBER: _ClassVar[int]
    RETURNED_MIB_FIELD_NUMBER: _ClassVar[int]
    model: str
    catalog_mib: int
    measured_mib: int
    returned_mib: int
    def __init__(self, model: _Optional[str] = ..., catalog_mib: _Optional[int] = ..., measured_mib: _Optional[int] = ..., returned_mib: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("seq", "at_ms", "missed", "time_unix_ms", "lease_granted", "lease_released", "lease_expired", "lease_revoked", "model_loading", "model_loaded", "model_evicted", "model_load_failed", "gpu_health", "queue", "admission_rejected", "pool", "kubelet", "runtime", "model_outgrew_catalog")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_GRANTED_FIELD_NUMBER: _ClassVar[int]
    LEASE_RELEASED_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    LEASE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    MODEL_LOADING_FIELD_NUMBER: _ClassVar[int]
    MODEL_LOADED_FIELD_NUMBER: _ClassVar[int]
    MODEL_EVICTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_LOAD_FAILED_FIELD_NUMBER: _ClassVar[int]
    GPU_HEALTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_REJECTED_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    KUBELET_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_OUTGREW_CATALOG_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    missed: int
    time_unix_ms: int
    lease_granted: LeaseEvent
    lease_released: LeaseEvent
    lease_expired: LeaseEvent
    lease_revoked: LeaseEvent
    model_loading: ModelEvent
    model_loaded: ModelEvent
    model_evicted: ModelEvent
    model_load_failed: ModelEvent
    gpu_health: GpuHealthEvent
    queue: QueueEvent
    admission_rejected: AdmissionRejected
    pool: PoolEvent
    kubelet: KubeletEvent
    runtime: RuntimeEvent
    model_outgrew_catalog: ModelMemoryEvent
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., missed: _Optional[int] = ..., time_unix_ms: _Optional[int] = ..., lease_granted: _Optional[_Union[LeaseEvent, _Mapping]] = ..., lease_released: _Optional[_Union[LeaseEvent, _Mapping]] = ..., lease_expired: _Optional[_Union[LeaseEvent, _Mapping]] = ..., lease_revoked: _Optional[_Union[LeaseEvent, _Mapping]] = ..., model_loading: _Optional[_Union[ModelEvent, _Mapping]] = ..., model_loaded: _Optional[_Union[ModelEvent, _Mapping]] = ..., model_evicted: _Optional[_Union[ModelEvent, _Mapping]] = ..., model_load_failed: _Optional[_Union[ModelEvent, _Mapping]] = ..., gpu_health: _Optional[_Union[GpuHealthEvent, _Mapping]] = ..., queue: _Optional[_Union[QueueEvent, _Mapping]] = ..., admission_rejected: _Optional[_Union[AdmissionRejected, _Mapping]] = ..., pool: _Optional[_Union[PoolEvent, _Mapping]] = ..., kubelet: _Optional[_Union[KubeletEvent, _Mapping]] = ..., runtime: _Optional[_Union[RuntimeEvent, _Mapping]] = ..., model_outgrew_catalog: _Optional[_Union[ModelMemoryEvent, _Mapping]] = ...) -> None: ...

class RuntimeEvent(_message.Message):
    __slots__ = ("kind", "reachable", "reason", "adopted", "dropped", "drifted")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ADOPTED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    reachable: bool
    reason: str
    adopted: int
    dropped: int
    drifted: bool
    def __init__(self, kind: _Optional[str] = ..., reachable: bool = ..., reason: _Optional[str] = ..., adopted: _Optional[int] = ..., dropped: _Optional[int] = ..., drifted: bool = ...) -> None: ...

class ModelMemoryEvent(_message.Message):
    __slots__ = ("model", "gpu_index", "gpu_uuid", "catalog_mib", "measured_mib")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    CATALOG_MIB_FIELD_NUMBER: _ClassVar[int]
    MEASURED_MIB_FIELD_NUMBER: _ClassVar[int]
    model: str
    gpu_index: int
    gpu_uuid: str
    catalog_mib: int
    measured_mib: int
    def __init__(self, model: _Optional[str] = ..., gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., catalog_mib: _Optional[int] = ..., measured_mib: _Optional[int] = ...) -> None: ...

class PoolEvent(_message.Message):
    __slots__ = ("gpu_index", "gpu_uuid", "overcommitted", "committed_mib", "usable_mib")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    OVERCOMMITTED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_MIB_FIELD_NUMBER: _ClassVar[int]
    USABLE_MIB_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    gpu_uuid: str
    overcommitted: bool
    committed_mib: int
    usable_mib: int
    def __init__(self, gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., overcommitted: bool = ..., committed_mib: _Optional[int] = ..., usable_mib: _Optional[int] = ...) -> None: ...

class KubeletEvent(_message.Message):
    __slots__ = ("resource", "registered", "message")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    resource: str
    registered: bool
    message: str
    def __init__(self, resource: _Optional[str] = ..., registered: bool = ..., message: _Optional[str] = ...) -> None: ...

class LeaseEvent(_message.Message):
    __slots__ = ("lease", "reason")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    reason: str
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ModelEvent(_message.Message):
    __slots__ = ("model", "gpu_index", "gpu_uuid", "weights_mib", "reason", "duration_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_MIB_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    gpu_index: int
    gpu_uuid: str
    weights_mib: int
    reason: str
    duration_ms: int
    def __init__(self, model: _Optional[str] = ..., gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., weights_mib: _Optional[int] = ..., reason: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class GpuHealthEvent(_message.Message):
    __slots__ = ("gpu_index", "gpu_uuid", "healthy", "reason")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    gpu_uuid: str
    healthy: bool
    reason: str
    def __init__(self, gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., healthy: bool = ..., reason: _Optional[str] = ...) -> None: ...

class QueueEvent(_message.Message):
    __slots__ = ("queued", "waiting_on_load")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    WAITING_ON_LOAD_FIELD_NUMBER: _ClassVar[int]
    queued: int
    waiting_on_load: int
    def __init__(self, queued: _Optional[int] = ..., waiting_on_load: _Optional[int] = ...) -> None: ...

class AdmissionRejected(_message.Message):
    __slots__ = ("model", "reason", "code")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    code: str
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class PreloadRequest(_message.Message):
    __slots__ = ("model", "gpu")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    model: str
    gpu: str
    def __init__(self, model: _Optional[str] = ..., gpu: _Optional[str] = ...) -> None: ...

class PreloadResponse(_message.Message):
    __slots__ = ("gpu_index", "gpu_uuid", "duration_ms")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    gpu_uuid: str
    duration_ms: int
    def __init__(self, gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class EvictRequest(_message.Message):
    __slots__ = ("model", "gpu")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    model: str
    gpu: str
    def __init__(self, model: _Optional[str] = ..., gpu: _Optional[str] = ...) -> None: ...

class EvictResponse(_message.Message):
    __slots__ = ("gpu_uuids",)
    GPU_UUIDS_FIELD_NUMBER: _ClassVar[int]
    gpu_uuids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gpu_uuids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "weights_mib", "working_mib", "max_concurrency", "load_ms", "task_ms", "task_types", "resident_on", "loading_on", "gpus_omitted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_MIB_FIELD_NUMBER: _ClassVar[int]
    WORKING_MIB_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    TASK_MS_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPES_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_ON_FIELD_NUMBER: _ClassVar[int]
    LOADING_ON_FIELD_NUMBER: _ClassVar[int]
    GPUS_OMITTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    weights_mib: int
    working_mib: int
    max_concurrency: int
    load_ms: int
    task_ms: int
    task_types: _containers.RepeatedScalarFieldContainer[str]
    resident_on: _containers.RepeatedScalarFieldContainer[str]
    loading_on: _containers.RepeatedScalarFieldContainer[str]
    gpus_omitted: int
    def __init__(self, name: _Optional[str] = ..., weights_mib: _Optional[int] = ..., working_mib: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., load_ms: _Optional[int] = ..., task_ms: _Optional[int] = ..., task_types: _Optional[_Iterable[str]] = ..., resident_on: _Optional[_Iterable[str]] = ..., loading_on: _Optional[_Iterable[str]] = ..., gpus_omitted: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class SetGpuFaultRequest(_message.Message):
    __slots__ = ("gpu", "faulted", "reason")
    GPU_FIELD_NUMBER: _ClassVar[int]
    FAULTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    gpu: str
    faulted: bool
    reason: str
    def __init__(self, gpu: _Optional[str] = ..., faulted: bool = ..., reason: _Optional[str] = ...) -> None: ...

class SetGpuFaultResponse(_message.Message):
    __slots__ = ("gpu_index", "gpu_uuid")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    gpu_uuid: str
    def __init__(self, gpu_index: _Optional[int] = ..., gpu_uuid: _Optional[str] = ...) -> None: ...
