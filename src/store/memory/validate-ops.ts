// Checks a commit's batch and serialises its values once (the log and Redis both store JSON).
import { invalid, type Violation } from '../../core/errors.js';
import type { StoreOp } from '../store.js';

export function checkOps(ops: StoreOp[]): void {
  const violations: Violation[] = [];
  if (!Array.isArray(ops) || ops.length === 0) throw invalid([{ Field: 'ops', Message: 'a commit needs at least one operation' }]);
  ops.forEach((op, i) => {
    if (typeof op.table !== 'string' || op.table === '') violations.push({ Field: `ops[${i}].table`, Message: 'must be a non-empty string' });
    if (typeof op.key !== 'string' || op.key === '') violations.push({ Field: `ops[${i}].key`, Message: 'must be a non-empty string' });
    if (op.op !== 'put' && op.op !== 'delete') violations.push({ Field: `ops[${i}].op`, Message: 'must be put or delete' });
    if (op.ifIndex !== undefined && (!Number.isInteger(op.ifIndex) || op.ifIndex < 0)) {
      violations.push({ Field: `ops[${i}].ifIndex`, Message: 'must be a non-negative integer' });
    }
    if (op.op === 'put') {
      if (op.value === undefined) violations.push({ Field: `ops[${i}].value`, Message: 'is required for a put' });
      else {
        try {
          JSON.stringify(op.value);
        } catch {
          violations.push({ Field: `ops[${i}].value`, Message: 'is not JSON-serialisable' });
        }
      }
    }
  });
  if (violations.length > 0) throw invalid(violations);
}

/** A deep copy through JSON, so a caller mutating its object later cannot change stored state. */
export function freezeValue<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
