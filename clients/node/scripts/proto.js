#!/usr/bin/env node
// Brings the admission API's proto into the package (proto/, shipped in the
// npm tarball and loaded at run time by @grpc/proto-loader) and generates its
// TypeScript types into src/generated/ (compiled with the sources). Both are
// build outputs, not committed: the proto in the repository is the contract.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const pkg = path.resolve(__dirname, '..');
const repoProto = path.resolve(pkg, '..', '..', 'proto', 'vision', 'v1', 'admission.proto');
const shipped = path.join(pkg, 'proto', 'vision', 'v1', 'admission.proto');

if (fs.existsSync(repoProto)) {
  fs.mkdirSync(path.dirname(shipped), { recursive: true });
  fs.copyFileSync(repoProto, shipped);
} else if (!fs.existsSync(shipped)) {
  throw new Error(`no proto: neither ${repoProto} nor ${shipped} exists`);
}

const out = path.join(pkg, 'src', 'generated');
fs.rmSync(out, { recursive: true, force: true });
// The options must match LOADER_OPTIONS in src/proto.ts.
execFileSync(
  process.execPath,
  [
    require.resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js'),
    '--keepCase=false',
    '--longs=String',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--grpcLib=@grpc/grpc-js',
    '--includeDirs', path.join(pkg, 'proto'),
    '--outDir', out,
    'vision/v1/admission.proto',
  ],
  { stdio: 'inherit' },
);
