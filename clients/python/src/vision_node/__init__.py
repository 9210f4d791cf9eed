"""vision-node-client: run vision tasks on a Kubernetes node's GPUs through
vision-node-daemon.

    from vision_node import Client

    client = Client.from_env()               # VISION_SOCKET / VISION_TOKEN, set by the device plugin
    with client.task("yolo-v8n", task_type="detect", timeout=30) as lease:
        model.to(f"cuda:{lease.cuda_device}")   # the lease is kept alive meanwhile
    client.stats()

``AsyncClient`` has the same names for asyncio. Errors are ``VisionError``
subclasses; ``LeaseLost`` means the GPU memory was taken back mid-task.
"""

from ._aio import AsyncClient, AsyncLease
from ._common import ENV_SOCKET, ENV_TOKEN, ENV_VRAM_TOKEN, Stats
from ._cuda import cuda_device_index
from ._errors import (
    AdmissionTimeout,
    InvalidRequest,
    LeaseLost,
    MissingEnvironment,
    ModelNotFound,
    ModelTooLarge,
    NodeBusy,
    NoModelServer,
    PermissionDenied,
    Unavailable,
    VisionError,
)
from ._events import (
    AdmissionRejected,
    Event,
    GpuHealthChanged,
    KubeletRegistration,
    LeaseEvent,
    LeaseExpired,
    LeaseGranted,
    LeaseInfo,
    LeaseReleased,
    LeaseRevoked,
    ModelEvent,
    ModelEvicted,
    ModelLoaded,
    ModelLoadFailed,
    ModelLoading,
    ModelOutgrewCatalog,
    PoolChanged,
    QueueChanged,
    RuntimeChanged,
    UnknownEvent,
)
from ._proto.vision.v1 import admission_pb2 as pb
from ._retry import RetryPolicy
from ._sync import Client, Lease

__version__ = "0.1.0"

__all__ = [
    "ENV_SOCKET",
    "ENV_TOKEN",
    "ENV_VRAM_TOKEN",
    "AdmissionRejected",
    "AdmissionTimeout",
    "AsyncClient",
    "AsyncLease",
    "Client",
    "Event",
    "GpuHealthChanged",
    "InvalidRequest",
    "KubeletRegistration",
    "Lease",
    "LeaseEvent",
    "LeaseExpired",
    "LeaseGranted",
    "LeaseInfo",
    "LeaseLost",
    "LeaseReleased",
    "LeaseRevoked",
    "MissingEnvironment",
    "ModelEvent",
    "ModelEvicted",
    "ModelLoadFailed",
    "ModelLoaded",
    "ModelLoading",
    "ModelOutgrewCatalog",
    "ModelNotFound",
    "ModelTooLarge",
    "NoModelServer",
    "NodeBusy",
    "PermissionDenied",
    "PoolChanged",
    "QueueChanged",
    "RetryPolicy",
    "RuntimeChanged",
    "Stats",
    "UnknownEvent",
    "Unavailable",
    "VisionError",
    "cuda_device_index",
    "pb",
]
