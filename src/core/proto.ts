// Loads a service of proto/isthmus/v1/*.proto into grpc-js, once. The path is the same relative to
// src/ and dist/, so both the sources (tests) and the build find the files.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

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
