// For tests: a config entry put straight into the store, past the write-time checks, as an entry
// stored before a check existed would be.
import type { Store } from '../../store/index.js';
import { CONFIG_ENTRIES_TABLE } from '../config-entries.js';
import { parseConfigEntry } from '../model.js';

export async function seedUnchecked(store: Store, raw: Record<string, unknown>): Promise<void> {
  const e = parseConfigEntry(raw);
  await store.commit([{ op: 'put', table: CONFIG_ENTRIES_TABLE, key: `${e.Kind}/${e.Name}`, value: e, ifIndex: 0 }]);
}
