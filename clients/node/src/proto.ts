// The admission API, loaded at run time from the proto that ships in the
// package (proto/vision/v1/admission.proto), with the TypeScript types that
// scripts/proto.js generated from the same file.

import * as path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { ProtoGrpcType } from './generated/admission';
import type { AdmissionClient } from './generated/vision/v1/Admission';

export type { AdmissionClient };
export type { Lease__Output as LeaseMessage } from './generated/vision/v1/Lease';
export type { WatchEvent__Output as WatchEventMessage } from './generated/vision/v1/WatchEvent';
export type { StatusResponse__Output as StatusResponse } from './generated/vision/v1/StatusResponse';
export type { ModelInfo__Output as ModelInfo } from './generated/vision/v1/ModelInfo';

/** Must match the flags scripts/proto.js gives proto-loader-gen-types. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [path.join(__dirname, '..', 'proto')],
};

let loaded: ProtoGrpcType | undefined;

function api(): ProtoGrpcType {
  if (!loaded) {
    const definition = protoLoader.loadSync('vision/v1/admission.proto', LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  }
  return loaded;
}

/** The grpc-js target for a Unix socket path. */
export function target(socket: string): string {
  return socket.startsWith('unix:') ? socket : `unix:${socket}`;
}

/**
 * A client of the Admission service on a Unix socket. grpc-js sends
 * `:authority: localhost` there (checked in test/authority.test.ts), which
 * every HTTP/2 server accepts.
 */
export function admissionClient(socket: string, options: grpc.ChannelOptions = {}): AdmissionClient {
  return new (api().vision.v1.Admission)(target(socket), grpc.credentials.createInsecure(), options);
}
