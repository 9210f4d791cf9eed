// What `:authority` grpc-js sends on a Unix socket: a plain HTTP/2 server
// (node:http2) on a socket records the headers of a real grpc-js call.
//
// grpc-js sends `localhost`, whatever form the `unix:` target takes; so the
// daemon's authority shim (needed for grpcio and grpc-java, which send the
// socket path) is not involved for Node clients.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { it } from 'node:test';

import * as grpc from '@grpc/grpc-js';

it('grpc-js sends :authority localhost on a Unix socket', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authority-'));
  const socket = path.join(dir, 'run', 'agent.sock');
  fs.mkdirSync(path.dirname(socket));
  const seen: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    seen.push(String(headers[':authority']));
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '12', 'grpc-message': 'probe' }));
    stream.end();
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  try {
    const targets = [`unix:${socket}`, `unix://${socket}`, `unix:${path.relative(process.cwd(), socket)}`];
    for (const target of targets) {
      const client = new grpc.Client(target, grpc.credentials.createInsecure());
      const code = await new Promise<number | undefined>((resolve) =>
        client.makeUnaryRequest('/vision.v1.Admission/Status', (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0), (e) =>
          resolve(e?.code),
        ),
      );
      client.close();
      assert.equal(code, grpc.status.UNIMPLEMENTED, `${target}: the call reached the server`);
    }
    assert.deepEqual(seen, ['localhost', 'localhost', 'localhost']);
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
