// The cluster's trust domain: chosen once, at the first start, kept in the Store, never changed after.
import { randomUUID } from 'node:crypto';
import { isIsthmusError } from '../core/errors.js';
import type { Store } from '../store/index.js';

const TABLE = 'meta';
const KEY = 'trust-domain';

export async function ensureTrustDomain(store: Store): Promise<string> {
  const existing = store.get<string>(TABLE, KEY);
  if (existing) return existing.value;
  const chosen = `${randomUUID()}.isthmus`;
  try {
    await store.commit([{ op: 'put', table: TABLE, key: KEY, value: chosen, ifIndex: 0 }]);
    return chosen;
  } catch (err) {
    // Another replica on the same Redis chose first: theirs stands.
    if (isIsthmusError(err, 'ISTHMUS_ERR_CONFLICT')) return store.get<string>(TABLE, KEY)!.value;
    throw err;
  }
}
