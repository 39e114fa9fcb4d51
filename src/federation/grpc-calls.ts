// Federation's gRPC calls in both directions: a unary call as a promise, our typed errors to a gRPC
// status and back (the code travels in the details), and one way to answer a unary call.
import * as grpc from '@grpc/grpc-js';
import { ErrorCodes, IsthmusError, invalid, isIsthmusError, type ErrorCode } from '../core/errors.js';
import { grpcStatusOf, MalformedMessage } from '../core/proto.js';
import type { Logger } from '../telemetry/index.js';

export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const code = isIsthmusError(err) ? err.code : ErrorCodes.INTERNAL;
  const message = isIsthmusError(err) ? err.message : 'internal error';
  return grpcStatusOf(code, message);
}

/** Our error back from a gRPC status: the code we sent in details, or one that fits the status. */
export function fromStatus(err: grpc.ServiceError, unreachable: string): IsthmusError {
  const m = /^(ISTHMUS_ERR_[A-Z_]+): (.*)$/s.exec(err.details ?? '');
  if (m) return new IsthmusError(m[1] as ErrorCode, m[2]);
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED)
    return new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `${unreachable} (${err.details || 'unavailable'})`);
  return new IsthmusError(ErrorCodes.INTERNAL, err.details || err.message);
}

export function unary<Req, Res>(
  fn: (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown,
  req: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

/** Answers a unary call with `work`'s result; a malformed request is refused before any work, naming its type. */
export function serveUnary<T>(log: Logger, cb: grpc.sendUnaryData<T>, call: { request: unknown }, type: string, work: () => Promise<T>): void {
  const malformed = call.request instanceof MalformedMessage ? call.request.reason : undefined;
  (malformed === undefined ? work() : Promise.reject(invalid([{ Field: type, Message: `not a valid ${type}: ${malformed}` }]))).then(
    (res) => cb(null, res),
    (err) => {
      if (!isIsthmusError(err)) log.error('federation call failed', { error: err });
      cb(toStatus(err) as grpc.ServiceError, null);
    },
  );
}
