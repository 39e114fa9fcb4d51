// Loads a service of proto/isthmus/v1/*.proto into grpc-js, once. The path is the same relative to
// src/ and dist/, so both the sources (tests) and the build find the files.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ErrorCodes, type ErrorCode } from './errors.js';

const cache = new Map<string, grpc.ServiceClientConstructor>();

export function protoPath(file: string): string {
  return fileURLToPath(new URL(`../../proto/isthmus/v1/${file}`, import.meta.url));
}

/** The client constructor (with `.service` for servers) of `isthmus.v1.<service>` in `file`. */
export function loadService(file: string, service: string): grpc.ServiceClientConstructor {
  const key = `${file}#${service}`;
  const hit = cache.get(key);
  if (hit) return hit;
  // Messages as grpc-js hands them over: camelCase fields, defaults filled, 64-bit numbers as numbers.
  const def = protoLoader.loadSync(protoPath(file), { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { isthmus: { v1: Record<string, grpc.ServiceClientConstructor> } };
  const ctor = pkg.isthmus.v1[service];
  if (!ctor) throw new Error(`${file} has no service ${service}`);
  cache.set(key, ctor);
  return ctor;
}

/**
 * A message that did not decode (garbage bytes, a field of the wrong wire type, a truncated
 * frame). grpc-js answers a failed decode with INTERNAL and no word on what was wrong; a service
 * registered with tolerantService() gets this in its place and refuses it as invalid input.
 */
export class MalformedMessage {
  constructor(readonly reason: string) {}
}

/** The service definition with every request decoder handing over a MalformedMessage instead of throwing. */
export function tolerantService(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(def)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          return new MalformedMessage((err as Error).message || 'cannot be decoded');
        }
      },
    };
  }
  return out;
}

/** The gRPC status an error code answers with on every listener (details lead with the code itself). */
const GRPC_STATUS_OF: Partial<Record<ErrorCode, grpc.status>> = {
  [ErrorCodes.INVALID]: grpc.status.INVALID_ARGUMENT,
  [ErrorCodes.PERMISSION_DENIED]: grpc.status.PERMISSION_DENIED,
  [ErrorCodes.ACL_NOT_FOUND]: grpc.status.PERMISSION_DENIED,
  [ErrorCodes.NOT_FOUND]: grpc.status.NOT_FOUND,
  [ErrorCodes.CONFLICT]: grpc.status.ABORTED,
  [ErrorCodes.PAYLOAD_TOO_LARGE]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCodes.UNAVAILABLE]: grpc.status.UNAVAILABLE,
  [ErrorCodes.PRIMARY_UNREACHABLE]: grpc.status.UNAVAILABLE,
  [ErrorCodes.STORE_UNAVAILABLE]: grpc.status.UNAVAILABLE,
};

/** `{ code, details }` for an error code and its message: `details` is "<code>: <message>". */
export function grpcStatusOf(code: ErrorCode, message: string): { code: grpc.status; details: string } {
  return { code: GRPC_STATUS_OF[code] ?? grpc.status.INTERNAL, details: `${code}: ${message}` };
}
