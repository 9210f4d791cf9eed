// Which CUDA device index a process sees for the lease's GPU.
//
// The daemon names a GPU by its node-wide index (NVML's, PCI bus order) and
// UUID. A process sees the GPUs the container runtime put in its container
// (NVIDIA_VISIBLE_DEVICES: `all`, `none`/`void`, or node indices / UUIDs),
// renumbered from 0 in bus order, then only those CUDA_VISIBLE_DEVICES lists
// (container indices or UUID prefixes, in that order; CUDA stops at the first
// entry it cannot resolve). Assumes CUDA enumerates in bus order
// (CUDA_DEVICE_ORDER=PCI_BUS_ID, or a node of identical GPUs).

export type NodeGpu = readonly [index: number, uuid: string];

function containerGpus(nodeGpus: NodeGpu[], nvidiaVisible: string | undefined): NodeGpu[] | null {
  const byBus = [...nodeGpus].sort((a, b) => a[0] - b[0]);
  if (nvidiaVisible === undefined || nvidiaVisible.trim() === 'all') {
    return byBus;
  }
  const value = nvidiaVisible.trim();
  if (value === '' || value === 'none' || value === 'void') {
    return null;
  }
  const chosen = new Set<number>();
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (/^\d+$/.test(entry)) {
      chosen.add(Number(entry));
    } else {
      for (const [i, u] of byBus) if (u === entry) chosen.add(i);
    }
  }
  return byBus.filter(([i]) => chosen.has(i));
}

function resolveCudaEntry(entry: string, container: NodeGpu[]): number | null {
  if (/^\d+$/.test(entry)) {
    const n = Number(entry);
    return n < container.length ? n : null;
  }
  if (entry.startsWith('GPU-')) {
    const matches = container.flatMap(([, u], pos) => (u.startsWith(entry) ? [pos] : []));
    return matches.length === 1 ? matches[0]! : null;
  }
  return null; // negative numbers, MIG-… and anything else
}

/**
 * The CUDA device index of GPU (`gpuIndex`, `gpuUuid`) for a process with
 * `env`, or null when it cannot see that GPU. `nodeGpus` lists the node's GPUs.
 */
export function cudaDeviceIndex(
  gpuUuid: string,
  gpuIndex: number,
  nodeGpus: readonly NodeGpu[],
  env: Readonly<Record<string, string | undefined>>,
): number | null {
  const gpus = new Map<number, string>(nodeGpus.map(([i, u]) => [i, u]));
  if (!gpus.has(gpuIndex)) gpus.set(gpuIndex, gpuUuid);
  const container = containerGpus([...gpus.entries()], env['NVIDIA_VISIBLE_DEVICES']);
  if (container === null) return null;
  const visible = env['CUDA_VISIBLE_DEVICES'];
  let order: NodeGpu[] = container;
  if (visible !== undefined) {
    order = [];
    const seen = new Set<number>();
    for (const raw of visible.split(',')) {
      const pos = resolveCudaEntry(raw.trim(), container);
      if (pos === null || seen.has(pos)) break;
      seen.add(pos);
      order.push(container[pos]!);
    }
  }
  const n = order.findIndex(([i]) => i === gpuIndex);
  return n < 0 ? null : n;
}
