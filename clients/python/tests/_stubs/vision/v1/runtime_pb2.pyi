from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoadModelRequest(_message.Message):
    __slots__ = ("model", "gpu_uuid", "gpu_index", "weights_mib", "load_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_MIB_FIELD_NUMBER: _ClassVar[int]
    LOAD_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    gpu_uuid: str
    gpu_index: int
    weights_mib: int
    load_id: int
    def __init__(self, model: _Optional[str] = ..., gpu_uuid: _Optional[str] = ..., gpu_index: _Optional[int] = ..., weights_mib: _Optional[int] = ..., load_id: _Optional[int] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("endpoint", "size_mib", "runtime_model")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SIZE_MIB_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_MODEL_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    size_mib: int
    runtime_model: str
    def __init__(self, endpoint: _Optional[str] = ..., size_mib: _Optional[int] = ..., runtime_model: _Optional[str] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model", "gpu_uuid", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    gpu_uuid: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., gpu_uuid: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLoadedRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LoadedModel(_message.Message):
    __slots__ = ("model", "gpu_uuid", "size_mib", "endpoint", "runtime_model")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    SIZE_MIB_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    gpu_uuid: str
    size_mib: int
    endpoint: str
    runtime_model: str
    def __init__(self, model: _Optional[str] = ..., gpu_uuid: _Optional[str] = ..., size_mib: _Optional[int] = ..., endpoint: _Optional[str] = ..., runtime_model: _Optional[str] = ...) -> None: ...

class ListLoadedResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[LoadedModel]
    def __init__(self, models: _Optional[_Iterable[_Union[LoadedModel, _Mapping]]] = ...) -> None: ...
