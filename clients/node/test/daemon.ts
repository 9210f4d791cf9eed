// The real daemon for these tests: target/debug/vision-node-daemon (or
// $VISION_DAEMON_BIN) with --dev --config clients/testdata/daemon.yaml and a
// temporary --state-dir; faults through the real visionctl.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { admissionClient, type AdmissionClient, type StatusResponse } from '../dist/proto';

/** Every wait in these tests ends within this many milliseconds. */
export const WAIT_MS = 20_000;

const REPO = path.resolve(__dirname, '..', '..', '..');
export const CONFIG = path.join(REPO, 'clients', 'testdata', 'daemon.yaml');

function targetDir(): string {
  const t = process.env['CARGO_TARGET_DIR'] ?? path.join(REPO, 'target');
  return path.isAbsolute(t) ? t : path.join(REPO, t);
}

function binary(name: string, override: string): string {
  const bin = process.env[override] ?? path.join(targetDir(), 'debug', name);
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} is missing: run \`cargo build --bin ${name}\` (or set ${override})`);
  }
  return bin;
}

/** Reconnect quickly while the daemon starts (grpc-js's first backoff is 1 s). */
export const FAST_RECONNECT = {
  'grpc.initial_reconnect_backoff_ms': 20,
  'grpc.max_reconnect_backoff_ms': 100,
};

export class Daemon {
  readonly stateDir: string;
  readonly taskSocket: string;
  readonly adminSocket: string;
  token = '';
  readonly log: string[] = [];
  private readonly proc: ChildProcess;
  private readonly exited: Promise<void>;
  private readonly admin: AdmissionClient;

  private constructor(readonly dir: string) {
    this.stateDir = path.join(dir, 'state');
    this.taskSocket = path.join(this.stateDir, 'pods', 'agent.sock');
    this.adminSocket = path.join(this.stateDir, 'admin.sock');
    this.proc = spawn(
      binary('vision-node-daemon', 'VISION_DAEMON_BIN'),
      ['run', '--dev', '--config', CONFIG, '--state-dir', this.stateDir, '--http-addr', '127.0.0.1:0'],
      { env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    for (const s of [this.proc.stdout, this.proc.stderr]) s?.on('data', (b: Buffer) => this.log.push(b.toString()));
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()));
    this.admin = admissionClient(this.adminSocket, FAST_RECONNECT);
  }

  /** Starts a daemon; resolves once it serves (a real signal: its answer). */
  static async start(): Promise<Daemon> {
    const d = new Daemon(fs.mkdtempSync(path.join(os.tmpdir(), 'vision-node-client-')));
    try {
      await new Promise<void>((resolve, reject) =>
        d.admin.waitForReady(new Date(Date.now() + WAIT_MS), (e) => (e ? reject(e) : resolve())),
      );
      await d.status();
    } catch (e) {
      await d.stop();
      throw new Error(`the daemon did not start serving (${String(e)}):\n${d.log.join('')}`);
    }
    d.token = fs.readFileSync(path.join(d.stateDir, 'dev-token'), 'utf8').trim();
    return d;
  }

  status(): Promise<StatusResponse> {
    return new Promise((resolve, reject) =>
      this.admin.status({}, { deadline: new Date(Date.now() + WAIT_MS) }, (e, r) => (e ? reject(e) : resolve(r!))),
    );
  }

  /** `visionctl fault GPU [--clear]` on this daemon's admin socket. */
  async fault(gpu: string, clear = false): Promise<string> {
    const args = ['--state-dir', this.stateDir, 'fault', gpu, ...(clear ? ['--clear'] : ['--reason', 'Xid 79: from a test'])];
    const { stdout } = await promisify(execFile)(binary('visionctl', 'VISIONCTL_BIN'), args, { timeout: WAIT_MS });
    return stdout;
  }

  async stop(): Promise<void> {
    this.admin.close();
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const killer = setTimeout(() => this.proc.kill('SIGKILL'), WAIT_MS);
      await this.exited;
      clearTimeout(killer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
