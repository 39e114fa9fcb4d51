// A service definition file in Consul's format: {"service": {...}}, {"services": [...]} or a bare service.
import { invalid } from '../core/errors.js';
import { serviceSchema, type ServiceInput } from './model.js';
import { normalizeKeys } from './normalize.js';

export function parseServiceDefinition(json: unknown): ServiceInput[] {
  const data = normalizeKeys(json) as Record<string, unknown>;
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw invalid([{ Field: '', Message: 'a service definition must be a JSON object' }]);
  const list = data.Service !== undefined ? [data.Service] : Array.isArray(data.Services) ? data.Services : [data];
  return list.map((s, i) => {
    const r = serviceSchema.safeParse(s);
    if (!r.success) {
      throw invalid(r.error.issues.map((x) => ({ Field: fieldPath(list.length > 1 ? `services[${i}]` : 'service', x.path), Message: x.message })));
    }
    return r.data;
  });
}

/** Consul-style field paths, as the HTTP API reports them: `service.Proxy.Upstreams[0].LocalBindPort`. */
function fieldPath(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return out;
}
