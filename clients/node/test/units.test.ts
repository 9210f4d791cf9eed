// The pure parts: retry planning, CUDA device mapping, events, errors, env.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { status as Status } from '@grpc/grpc-js';

import {
  AdmissionTimeoutError,
  MissingEnvironmentError,
  ModelNotFoundError,
  ModelTooLargeError,
  NodeBusyError,
  PermissionDeniedError,
  UnavailableError,
  VisionClient,
  VisionError,
  cudaDeviceIndex,
  fromWire,
} from '../dist/index';
import { fromServiceError } from '../dist/errors';
import { Attempts, RPC_GRACE_MS, backoffCap, checkPolicy } from '../dist/retry';

describe('retries', () => {
  const policy = { initialBackoffMs: 100, maxBackoffMs: 1000, multiplier: 2 };

  it('caps grow exponentially up to the maximum', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((n) => backoffCap(policy, n)), [100, 200, 400, 800, 1000, 1000]);
    assert.equal(backoffCap(policy, 1e6), 1000);
  });

  it('jitters each wait within its cap', () => {
    const values = [0, 0.5, 0.999];
    let i = 0;
    const a = new Attempts(policy, 100_000, 0, () => values[i++ % 3]!);
    assert.deepEqual([0, 1, 2].map(() => a.afterFailure('RESOURCE_EXHAUSTED', 0)), [0, 100, 399.6]);
  });

  it('stops at the deadline, and sends what is left of the timeout', () => {
    const a = new Attempts(policy, 3000, 10_000, () => 0.99);
    let t = 10_000;
    let attempts = 1;
    for (let d = a.afterFailure('UNAVAILABLE', t); d !== undefined; d = a.afterFailure('UNAVAILABLE', t)) {
      t += d;
      attempts += 1;
      assert.ok(t < 13_000);
      assert.equal(a.requestTimeoutMs(t), Math.floor(13_000 - t));
    }
    assert.equal(a.failures, attempts);
    assert.ok(attempts >= 3);
  });

  it('retries only a full queue and unavailability', () => {
    for (const code of ['NOT_FOUND', 'DEADLINE_EXCEEDED', 'PERMISSION_DENIED', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION']) {
      assert.equal(new Attempts(policy, 30_000, 0).afterFailure(code, 0), undefined, code);
    }
    for (const code of ['RESOURCE_EXHAUSTED', 'UNAVAILABLE']) {
      assert.notEqual(new Attempts(policy, 30_000, 0).afterFailure(code, 0), undefined, code);
    }
  });

  it('treats timeout 0 as never queue, and no timeout as the daemon default once', () => {
    const zero = new Attempts(policy, 0, 5);
    assert.equal(zero.requestTimeoutMs(5), 0);
    assert.ok(Math.abs(zero.callDeadline(5)!.getTime() - Date.now() - RPC_GRACE_MS) < 1000);
    assert.equal(zero.afterFailure('RESOURCE_EXHAUSTED', 5), undefined);
    const none = new Attempts(policy, undefined, 0);
    assert.equal(none.requestTimeoutMs(0), undefined);
    assert.equal(none.callDeadline(0), undefined);
    assert.equal(none.afterFailure('UNAVAILABLE', 0), undefined);
  });

  it('refuses bad policies and timeouts', () => {
    assert.throws(() => checkPolicy({ initialBackoffMs: 0, maxBackoffMs: 1, multiplier: 2 }), RangeError);
    assert.throws(() => checkPolicy({ initialBackoffMs: 2, maxBackoffMs: 1, multiplier: 2 }), RangeError);
    assert.throws(() => new Attempts(policy, -1, 0), RangeError);
  });
});

describe('cudaDeviceIndex', () => {
  const node = [
    [0, 'GPU-aaaa-0'],
    [1, 'GPU-bbbb-1'],
    [2, 'GPU-cccc-2'],
    [3, 'GPU-dddd-3'],
  ] as const;
  const cases: [Record<string, string>, number | null][] = [
    [{}, 2],
    [{ NVIDIA_VISIBLE_DEVICES: 'all' }, 2],
    [{ NVIDIA_VISIBLE_DEVICES: 'GPU-cccc-2' }, 0],
    [{ NVIDIA_VISIBLE_DEVICES: '3,2' }, 0],
    [{ NVIDIA_VISIBLE_DEVICES: 'GPU-dddd-3,GPU-aaaa-0,GPU-cccc-2' }, 1],
    [{ NVIDIA_VISIBLE_DEVICES: '0,1' }, null],
    [{ NVIDIA_VISIBLE_DEVICES: 'none' }, null],
    [{ NVIDIA_VISIBLE_DEVICES: 'void' }, null],
    [{ NVIDIA_VISIBLE_DEVICES: '' }, null],
    [{ CUDA_VISIBLE_DEVICES: '3,2' }, 1],
    [{ CUDA_VISIBLE_DEVICES: 'GPU-cccc' }, 0],
    [{ CUDA_VISIBLE_DEVICES: 'GPU-' }, null],
    [{ CUDA_VISIBLE_DEVICES: '0,9,2' }, null],
    [{ CUDA_VISIBLE_DEVICES: '0,-1,2' }, null],
    [{ CUDA_VISIBLE_DEVICES: '1,1,2' }, null],
    [{ CUDA_VISIBLE_DEVICES: '' }, null],
    [{ CUDA_VISIBLE_DEVICES: 'MIG-1234,2' }, null],
    [{ NVIDIA_VISIBLE_DEVICES: '1,2', CUDA_VISIBLE_DEVICES: '1' }, 0],
    [{ NVIDIA_VISIBLE_DEVICES: '1,2', CUDA_VISIBLE_DEVICES: '2' }, null],
  ];
  for (const [env, expected] of cases) {
    it(`node GPU 2 with ${JSON.stringify(env)} is ${expected}`, () => {
      assert.equal(cudaDeviceIndex('GPU-cccc-2', 2, node, env), expected);
    });
  }
  it("uses the lease's own GPU without the node's list", () => {
    assert.equal(cudaDeviceIndex('GPU-x', 0, [], {}), 0);
  });
});

describe('events and errors', () => {
  it('turns wire events into typed ones', () => {
    const ev = fromWire({
      seq: '3',
      atMs: '99',
      missed: '0',
      event: 'leaseRevoked',
      leaseRevoked: {
        lease: { leaseId: '7', model: 'yolo', gpuIndex: 1, gpuUuid: 'GPU-1', warm: true, waitedMs: '5', expiresInMs: '1', ttlMs: '60000', runtimeEndpoint: '10.0.0.7:8001', runtimeModel: 'yolov8n_onnx', workingMib: '512' },
        reason: 'gpu_unhealthy',
      },
    } as never);
    assert.equal(ev.type, 'leaseRevoked');
    assert.ok(ev.type === 'leaseRevoked');
    assert.deepEqual([ev.seq, ev.atMs, ev.lease.leaseId, ev.lease.ttlMs, ev.lease.warm, ev.reason], [3, 99, '7', 60000, true, 'gpu_unhealthy']);
    assert.deepEqual([ev.lease.runtimeEndpoint, ev.lease.runtimeModel], ['10.0.0.7:8001', 'yolov8n_onnx']);
    assert.equal(fromWire({ seq: '1', atMs: '1', missed: '0' } as never).type, 'unknown');
    const lost = fromWire({ seq: '4', atMs: '5', missed: '0', event: 'runtime', runtime: { kind: 'triton', reachable: false, reason: 'connection refused', adopted: 0, dropped: 0 } } as never);
    assert.ok(lost.type === 'runtime');
    assert.deepEqual([lost.kind, lost.reachable, lost.reason, lost.drifted], ['triton', false, 'connection refused', false]);
    const drift = fromWire({ seq: '5', atMs: '6', missed: '0', event: 'runtime', runtime: { kind: 'triton', reachable: true, reason: '', adopted: 1, dropped: 0, drifted: true } } as never);
    assert.ok(drift.type === 'runtime');
    assert.deepEqual([drift.reachable, drift.drifted, drift.adopted, drift.dropped], [true, true, 1, 0]);
    const grew = fromWire({ seq: '6', atMs: '7', missed: '0', event: 'modelOutgrewCatalog', modelOutgrewCatalog: { model: 'sam', gpuIndex: 0, gpuUuid: 'GPU-0', catalogMib: '2400', measuredMib: '3100' } } as never);
    assert.ok(grew.type === 'modelOutgrewCatalog');
    assert.deepEqual([grew.model, grew.catalogMib, grew.measuredMib], ['sam', 2400, 3100]);
    const rejected = fromWire({ seq: '8', atMs: '9', missed: '0', event: 'admissionRejected', admissionRejected: { model: 'sd3b', reason: 'deadline_exceeded', code: 'DEADLINE_EXCEEDED' } } as never);
    assert.ok(rejected.type === 'admissionRejected');
    assert.deepEqual([rejected.model, rejected.reason, rejected.code], ['sd3b', 'deadline_exceeded', 'DEADLINE_EXCEEDED']);
  });

  it('maps status codes to error classes that keep the daemon\'s words', () => {
    const cases: [number, new (...a: never[]) => VisionError][] = [
      [Status.NOT_FOUND, ModelNotFoundError],
      [Status.FAILED_PRECONDITION, ModelTooLargeError],
      [Status.RESOURCE_EXHAUSTED, NodeBusyError],
      [Status.DEADLINE_EXCEEDED, AdmissionTimeoutError],
      [Status.PERMISSION_DENIED, PermissionDeniedError],
      [Status.UNAVAILABLE, UnavailableError],
    ];
    for (const [code, cls] of cases) {
      const e = Object.assign(new Error('x'), { code, details: 'what to do', metadata: null });
      const mapped = fromServiceError(e, "admitting 'm'", 'gave up after 3 attempts');
      assert.ok(mapped instanceof cls, cls.name);
      assert.equal(mapped.details, 'what to do');
      assert.equal(mapped.message, `admitting 'm': ${Status[code]}: what to do (gave up after 3 attempts)`);
    }
  });

  it('fromEnv names what is missing and how to get it', () => {
    assert.throws(() => VisionClient.fromEnv({}), (e: unknown) => {
      assert.ok(e instanceof MissingEnvironmentError);
      assert.match(e.message, /VISION_SOCKET and VISION_TOKEN/);
      assert.match(e.message, /vision\.ai\/slot/);
      return true;
    });
    const c = VisionClient.fromEnv({ VISION_SOCKET: '/nowhere.sock', VISION_VRAM_TOKEN: 'v' });
    assert.equal(c.socket, '/nowhere.sock');
    void c.close();
  });
});
