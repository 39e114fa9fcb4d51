// Consul accepts service definitions in PascalCase (the HTTP API) and snake_case (definition files):
// turn keys into PascalCase, leaving user-owned maps (Meta, Header, Config) as they are.

const WORDS: Record<string, string> = { id: 'ID', ttl: 'TTL', http: 'HTTP', tcp: 'TCP', tls: 'TLS', ns: 'NS', uri: 'URI', grpc: 'GRPC' };
const OPAQUE = new Set(['Meta', 'Header', 'Config', 'NodeMeta', 'ServiceMeta', 'TaggedAddresses']);

export function pascalKey(key: string): string {
  if (/^[A-Z]/.test(key) && !key.includes('_')) return key;
  return key
    .split('_')
    .filter(Boolean)
    .map((w) => WORDS[w.toLowerCase()] ?? w[0].toUpperCase() + w.slice(1))
    .join('');
}

export function normalizeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalizeKeys);
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const key = pascalKey(k);
    out[key] = OPAQUE.has(key) ? v : normalizeKeys(v);
  }
  return out;
}
