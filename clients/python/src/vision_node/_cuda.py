"""Which CUDA device index a process sees for the lease's GPU.

The daemon names a GPU by its node-wide index (NVML's, PCI bus order) and
UUID. A process sees the GPUs that the container runtime put in its container
(``NVIDIA_VISIBLE_DEVICES``: ``all``, ``none``/``void``, or a list of node
indices or UUIDs), renumbered from 0 in PCI bus order, and then only those
that ``CUDA_VISIBLE_DEVICES`` lists (container indices or UUID prefixes, in
the order given; CUDA stops at the first entry it cannot resolve).

Assumes CUDA enumerates in PCI bus order: true with
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and on nodes whose GPUs are all the same
model (CUDA's default "fastest first" order then falls back to the bus order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _container_gpus(node_gpus: Sequence[tuple[int, str]], nvidia_visible: str | None) -> list[tuple[int, str]] | None:
    """The container's GPUs as (node index, uuid), in the order CUDA numbers
    them; None when the container sees none."""
    by_bus = sorted(node_gpus)
    if nvidia_visible is None or nvidia_visible.strip() == "all":
        return by_bus
    value = nvidia_visible.strip()
    if value in ("", "none", "void"):
        return None
    chosen: set[int] = set()
    for raw in value.split(","):
        entry = raw.strip()
        if entry.isdigit():
            chosen.add(int(entry))
        else:
            chosen.update(i for i, u in by_bus if u == entry)
    return [(i, u) for i, u in by_bus if i in chosen]


def _resolve_cuda_entry(entry: str, container: list[tuple[int, str]]) -> int | None:
    """Position in ``container`` of one CUDA_VISIBLE_DEVICES entry; None when
    CUDA would stop there."""
    if entry.isdigit():
        n = int(entry)
        return n if n < len(container) else None
    if entry.startswith("GPU-"):
        matches = [pos for pos, (_, u) in enumerate(container) if u.startswith(entry)]
        return matches[0] if len(matches) == 1 else None
    # Negative numbers, MIG-… identifiers and anything else: we cannot map
    # them to a whole GPU, and CUDA stops at invalid ones.
    return None


def cuda_device_index(
    gpu_uuid: str,
    gpu_index: int,
    node_gpus: Sequence[tuple[int, str]],
    environ: Mapping[str, str],
) -> int | None:
    """The ``torch.device("cuda", N)`` index of the GPU ``(gpu_index,
    gpu_uuid)`` for a process with ``environ``, or None when that process
    cannot see the GPU.

    ``node_gpus`` lists the node's GPUs as (index, uuid); the lease's own GPU
    is added when missing.
    """
    gpus = {i: u for i, u in node_gpus}
    gpus.setdefault(gpu_index, gpu_uuid)
    container = _container_gpus(list(gpus.items()), environ.get("NVIDIA_VISIBLE_DEVICES"))
    if container is None:
        return None
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        order = container
    else:
        order = []
        seen: set[int] = set()
        for raw in visible.split(","):
            pos = _resolve_cuda_entry(raw.strip(), container)
            if pos is None or pos in seen:
                break
            seen.add(pos)
            order.append(container[pos])
    for n, (i, _) in enumerate(order):
        if i == gpu_index:
            return n
    return None

