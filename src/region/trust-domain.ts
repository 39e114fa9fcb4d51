// The cluster's trust domain: chosen once, at the first start, kept in the Store, never changed after.
import { randomUUID } from 'node:crypto';
import { ErrorCodes, IsthmusError, isIsthmusError } from '../core/errors.js';
import type { Store } from '../store/index.js';

const TABLE = 'meta';
const KEY = 'trust-domain';

export async function ensureTrustDomain(store: Store, joining?: string): Promise<string> {
  const existing = store.get<string>(TABLE, KEY);
  if (existing) {
    if (joining && existing.value !== joining) {
      throw new IsthmusError(
        ErrorCodes.TRUST_DOMAIN_MISMATCH,
        `this server's data belongs to trust domain ${existing.value}, the join token to ${joining}: use an empty --data-dir to join`,
      );
    }
    return existing.value;
  }
  // A secondary takes the primary's trust domain from its join token; a primary chooses one.
  const chosen = joining ?? `${randomUUID()}.isthmus`;
  try {
    await store.commit([{ op: 'put', table: TABLE, key: KEY, value: chosen, ifIndex: 0 }]);
    return chosen;
  } catch (err) {
    // Another replica on the same Redis chose first: theirs stands.
    if (isIsthmusError(err, 'ISTHMUS_ERR_CONFLICT')) return store.get<string>(TABLE, KEY)!.value;
    throw err;
  }
}
