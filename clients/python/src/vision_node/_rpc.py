"""The daemon's RPCs on a grpcio channel (sync or asyncio).

Written out rather than generated: grpc_python_out's module refuses to load
under a grpcio older than the generator that wrote it, and these are a few
method paths and the messages' own (de)serialisers.
"""

from __future__ import annotations

from typing import Any

from ._proto.vision.v1 import admission_pb2 as pb

_SERVICE = "/vision.v1.Admission/"

#: Channel options for the daemon's Unix socket. grpcio sends the socket path
#: as the HTTP/2 ``:authority`` by default, which strict HTTP/2 servers refuse;
#: the daemon accepts it, but sending ``localhost`` (as kubelet does since
#: 1.26) works with any server.
CHANNEL_OPTIONS = (("grpc.default_authority", "localhost"),)


def target(socket: str) -> str:
    """The grpcio target for a Unix socket path."""
    return socket if socket.startswith("unix:") else "unix:" + socket


class Stub:
    """The Admission service's methods, bound to one channel."""

    def __init__(self, channel: Any) -> None:
        def unary(name: str, req: Any, resp: Any) -> Any:
            return channel.unary_unary(
                _SERVICE + name,
                request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString,
            )

        self.admit = unary("Admit", pb.AdmitRequest, pb.AdmitResponse)
        self.release = unary("Release", pb.ReleaseRequest, pb.ReleaseResponse)
        self.keep_alive = unary("KeepAlive", pb.KeepAliveRequest, pb.KeepAliveResponse)
        self.status = unary("Status", pb.StatusRequest, pb.StatusResponse)
        self.list_models = unary("ListModels", pb.ListModelsRequest, pb.ListModelsResponse)
        self.set_gpu_fault = unary("SetGpuFault", pb.SetGpuFaultRequest, pb.SetGpuFaultResponse)
        self.watch = channel.unary_stream(
            _SERVICE + "Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchEvent.FromString,
        )
