// Typed errors with stable codes. Callers and tests branch on `code`, never on message text.
// Every code is listed in docs/errors.md.

export const ErrorCodes = {
  INVALID: 'ISTHMUS_ERR_INVALID',
  NOT_FOUND: 'ISTHMUS_ERR_NOT_FOUND',
  CONFLICT: 'ISTHMUS_ERR_CONFLICT',
  PERMISSION_DENIED: 'ISTHMUS_ERR_PERMISSION_DENIED',
  ACL_NOT_FOUND: 'ISTHMUS_ERR_ACL_NOT_FOUND',
  ACL_BOOTSTRAPPED: 'ISTHMUS_ERR_ACL_BOOTSTRAPPED',
  STORE_UNAVAILABLE: 'ISTHMUS_ERR_STORE_UNAVAILABLE',
  STORE_CORRUPT: 'ISTHMUS_ERR_STORE_CORRUPT',
  INDEX_TOO_OLD: 'ISTHMUS_ERR_INDEX_TOO_OLD',
  PRIMARY_UNREACHABLE: 'ISTHMUS_ERR_PRIMARY_UNREACHABLE',
  RATE_LIMITED: 'ISTHMUS_ERR_RATE_LIMITED',
  TRUST_DOMAIN_MISMATCH: 'ISTHMUS_ERR_TRUST_DOMAIN_MISMATCH',
  BAD_CONFIG: 'ISTHMUS_ERR_BAD_CONFIG',
  BAD_CLIENT_HELLO: 'ISTHMUS_ERR_BAD_CLIENT_HELLO',
  UNAVAILABLE: 'ISTHMUS_ERR_UNAVAILABLE',
  TIMEOUT: 'ISTHMUS_ERR_TIMEOUT',
  INTENTION_DENIED: 'ISTHMUS_ERR_INTENTION_DENIED',
  PAYLOAD_TOO_LARGE: 'ISTHMUS_ERR_PAYLOAD_TOO_LARGE',
  REQUEST_TIMEOUT: 'ISTHMUS_ERR_REQUEST_TIMEOUT',
  INTERNAL: 'ISTHMUS_ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** One thing wrong with an input, named by its field path (`Permissions[0].HTTP.PathRegex`). */
export interface Violation {
  Field: string;
  Message: string;
}

export class IsthmusError extends Error {
  readonly code: ErrorCode;
  readonly violations: Violation[];

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; violations?: Violation[] }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IsthmusError';
    this.code = code;
    this.violations = options?.violations ?? [];
  }
}

export function invalid(violations: Violation[] | string, message?: string): IsthmusError {
  const list = typeof violations === 'string' ? [{ Field: '', Message: violations }] : violations;
  const text = message ?? list.map((v) => (v.Field ? `${v.Field}: ${v.Message}` : v.Message)).join('; ');
  return new IsthmusError(ErrorCodes.INVALID, text, { violations: list });
}

export function notFound(message: string): IsthmusError {
  return new IsthmusError(ErrorCodes.NOT_FOUND, message);
}

export function conflict(message: string): IsthmusError {
  return new IsthmusError(ErrorCodes.CONFLICT, message);
}

export function permissionDenied(message: string): IsthmusError {
  return new IsthmusError(ErrorCodes.PERMISSION_DENIED, message);
}

export function isIsthmusError(err: unknown, code?: ErrorCode): err is IsthmusError {
  return err instanceof IsthmusError && (code === undefined || err.code === code);
}
