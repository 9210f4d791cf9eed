// VisionClient against the real daemon (see daemon.ts).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { afterEach, beforeEach, it } from 'node:test';

import {
  AdmissionTimeoutError,
  InvalidRequestError,
  LeaseLostError,
  ModelNotFoundError,
  NodeBusyError,
  PermissionDeniedError,
  UnavailableError,
  VisionClient,
  VisionError,
  type VisionClientEvents,
} from '../dist/index';
import { Daemon, FAST_RECONNECT, WAIT_MS } from './daemon';

let daemon: Daemon;
let vrm: VisionClient;

beforeEach(async () => {
  delete process.env['NVIDIA_VISIBLE_DEVICES'];
  delete process.env['CUDA_VISIBLE_DEVICES'];
  daemon = await Daemon.start();
  vrm = new VisionClient({ socket: daemon.taskSocket, token: daemon.token, channelOptions: FAST_RECONNECT });
  await vrm.initialize();
});

afterEach(async () => {
  await vrm.close();
  await daemon.stop();
});

/** The next `name` event for which `pred` holds; fails after WAIT_MS. */
async function next<K extends keyof VisionClientEvents>(
  name: K,
  pred: (...args: VisionClientEvents[K]) => boolean = () => true,
): Promise<VisionClientEvents[K]> {
  const signal = AbortSignal.timeout(WAIT_MS);
  for (;;) {
    const args = (await once(vrm, name, { signal })) as VisionClientEvents[K];
    if (pred(...args)) return args;
  }
}

async function leasesOnTheDaemon(): Promise<string[]> {
  return (await daemon.status()).leases.map((l) => l.leaseId);
}

it('executeTask admits, runs the callback holding the lease, and releases', async () => {
  const completed = next('taskCompleted');
  const result = await vrm.executeTask('small', 'detect', async (lease) => {
    assert.equal(lease.model, 'small');
    assert.equal(lease.gpuIndex, 0);
    assert.equal(lease.warm, false);
    assert.equal(lease.cudaDevice, 0);
    assert.equal(lease.ttlMs, 2000);
    assert.deepEqual(await leasesOnTheDaemon(), [lease.leaseId]);
    return { boxes: 3 };
  });
  assert.deepEqual(result, { boxes: 3 });
  const [done] = await completed;
  assert.equal(done.model, 'small');
  assert.equal(done.taskType, 'detect');
  assert.equal(done.warm, false);
  assert.deepEqual(done.result, { boxes: 3 });
  assert.deepEqual(await leasesOnTheDaemon(), []);
  await vrm.executeTask('small', 'detect', (lease) => assert.equal(lease.warm, true));
  const stats = vrm.getPerformanceStats();
  assert.equal(stats.totalTasks, 2);
  assert.equal(stats.successRate, 1);
  assert.equal(stats.warmRatio, 0.5);
  assert.equal(stats.inFlight, 0);
  assert.ok(stats.avgWaitMs > 0 && stats.avgExecutionMs > 0);
});

it('a callback that throws still releases, and the task counts as failed', async () => {
  const failed = next('taskFailed');
  await assert.rejects(
    vrm.executeTask('small', '', () => {
      throw new Error('bad frame');
    }),
    /bad frame/,
  );
  const [f] = await failed;
  assert.match(f.error.message, /bad frame/);
  assert.ok(f.leaseId);
  assert.deepEqual(await leasesOnTheDaemon(), []);
  const s = vrm.getPerformanceStats();
  assert.deepEqual([s.totalTasks, s.failedTasks, s.successRate], [1, 1, 0]);
});

it('the lease is kept alive past its TTL', async () => {
  await vrm.executeTask('small', '', async (lease) => {
    // Held for 1.5 TTLs: the daemon still has it only because it was renewed.
    await new Promise((r) => setTimeout(r, 1.5 * lease.ttlMs));
    assert.equal(lease.lost, false);
    assert.ok(lease.renewals >= 2, `${lease.renewals} renewals`);
    assert.deepEqual(await leasesOnTheDaemon(), [lease.leaseId]);
  });
});

it('an unknown model is refused without retrying', async () => {
  await assert.rejects(vrm.executeTask('no-such-model', '', () => 1), (e: unknown) => {
    assert.ok(e instanceof ModelNotFoundError);
    assert.equal(e.code, 'NOT_FOUND');
    assert.match(e.details, /small/);
    return true;
  });
  const s = vrm.getPerformanceStats();
  assert.deepEqual([s.admissionFailures, s.retries], [1, 0]);
});

it('a task type the model does not serve is invalid', async () => {
  await assert.rejects(vrm.admit('small', 'text-to-image'), InvalidRequestError);
});

it('a wrong token is refused', async () => {
  const forged = new VisionClient({ socket: daemon.taskSocket, token: 'forged' });
  try {
    await assert.rejects(forged.admit('small'), (e: unknown) => e instanceof PermissionDeniedError && /VISION_TOKEN/.test(e.details));
  } finally {
    await forged.close();
  }
});

it('an admission that waits too long times out; timeout 0 never queues', async () => {
  const held = await vrm.admit('big');
  await assert.rejects(vrm.executeTask('big', '', () => 1, { timeoutMs: 300 }), AdmissionTimeoutError);
  await assert.rejects(vrm.admit('big', '', { timeoutMs: 0 }), NodeBusyError);
  await held.release();
  assert.equal(vrm.getPerformanceStats().retries, 0);
});

it('a full queue is retried until there is room', async () => {
  const held = await vrm.admit('big');
  const queuedUp = next('queue', (q) => q.queued === 1);
  const first = vrm.executeTask('big', '', () => 'queued', { timeoutMs: WAIT_MS });
  await queuedUp; // the queue (of one) is now full
  const retried = next('retry', (r) => r.code === 'RESOURCE_EXHAUSTED');
  const second = vrm.executeTask('big', '', () => 'retried', { timeoutMs: WAIT_MS });
  await retried;
  await held.release();
  assert.deepEqual(await Promise.all([first, second]), ['queued', 'retried']);
  assert.ok(vrm.getPerformanceStats().retries >= 1);
  // With a queue of one, this pod's own bound (per_pod_queue_limit, at most
  // queue_limit) is full as soon as the node's is: either refusal counts.
  const seen = (await daemon.status()).counters?.outcomes ?? {};
  assert.ok(Number(seen['queue_full'] ?? 0) + Number(seen['pod_queue_full'] ?? 0) >= 1);
});

it('a lease revoked mid-task rejects executeTask with LeaseLostError at once', async () => {
  const lostEvent = next('leaseLost');
  let signalled: AbortSignal | undefined;
  await assert.rejects(
    vrm.executeTask('small', '', async (lease) => {
      signalled = lease.signal;
      await daemon.fault(lease.gpuUuid);
      await new Promise(() => undefined); // a task that would never finish by itself
    }),
    (e: unknown) => e instanceof LeaseLostError && /revoked/.test(e.reason),
  );
  assert.ok(signalled?.aborted);
  assert.ok(signalled?.reason instanceof LeaseLostError);
  const [lost] = await lostEvent;
  assert.match(lost.reason, /revoked/);
  assert.deepEqual(await leasesOnTheDaemon(), []);
  const s = vrm.getPerformanceStats();
  assert.deepEqual([s.leasesLost, s.failedTasks], [1, 1]);
});

it('a lease that cannot be renewed is lost when it expires', async () => {
  const lease = await vrm.admit('small');
  const lost = next('leaseLost');
  await daemon.stop(); // KeepAlives fail until the lease's TTL has passed
  const [l] = await lost;
  assert.match(l.reason, /could not be renewed before it expired/);
  assert.equal(lease.lost, true);
  await assert.rejects(lease.release(), LeaseLostError);
});

it('a missing daemon is retried until the timeout', async () => {
  const gone = new VisionClient({ socket: `${daemon.stateDir}/no-daemon.sock`, token: 't', retry: { initialBackoffMs: 10, maxBackoffMs: 50 } });
  try {
    await assert.rejects(gone.admit('small', '', { timeoutMs: 500 }), (e: unknown) => e instanceof UnavailableError && /gave up after/.test(e.message));
    assert.ok(gone.getPerformanceStats().retries >= 1);
  } finally {
    await gone.close();
  }
});

it('events come from the Watch stream', async () => {
  const loaded = next('modelLoaded', (m) => m.model === 'small');
  const granted = next('leaseGranted');
  const released = next('leaseReleased');
  const lease = await vrm.admit('small');
  await lease.release();
  const [[m], [g], [r]] = await Promise.all([loaded, granted, released]);
  assert.equal(m.type, 'modelLoaded');
  assert.equal(m.gpuUuid, lease.gpuUuid);
  assert.equal(g.lease.leaseId, lease.leaseId);
  assert.equal(r.lease.leaseId, lease.leaseId);
  assert.ok(m.seq < g.seq && g.seq < r.seq);
});

it('cudaDevice follows the container\'s visible devices', async () => {
  const uuid = (await daemon.status()).gpus[0]!.uuid;
  process.env['NVIDIA_VISIBLE_DEVICES'] = uuid;
  assert.equal(await vrm.executeTask('small', '', (l) => l.cudaDevice), 0);
  process.env['NVIDIA_VISIBLE_DEVICES'] = 'GPU-00000000-0000-0000-0000-000000000000';
  assert.equal(await vrm.executeTask('small', '', (l) => l.cudaDevice), null);
});

it('fromEnv reads what Allocate sets; close releases what is held', async () => {
  const c = VisionClient.fromEnv({ VISION_SOCKET: daemon.taskSocket, VISION_TOKEN: daemon.token });
  await c.admit('small');
  await c.admit('small');
  assert.equal((await leasesOnTheDaemon()).length, 2);
  await c.close();
  assert.deepEqual(await leasesOnTheDaemon(), []);
  await assert.rejects(c.admit('small'), (e: unknown) => e instanceof VisionError && /closed/.test(e.message));
});

it('status and models come from the daemon', async () => {
  const s = await vrm.status();
  assert.equal(s.node, 'clients-test');
  assert.equal(s.slots, 8);
  assert.deepEqual((await vrm.models()).map((m) => m.name).sort(), ['big', 'small']);
});
