// What the sidecar benchmark children share: the build in dist/ (what `isthmus connect proxy` runs;
// `npm run build` first: the sources through tsx name every closure they make, per connection here),
// one CA with its bundle, leaves for dc1's services, and the web => api intention.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as CaModule from '../../src/ca/index.js';
import type * as IntentionsModule from '../../src/intentions/index.js';
import type * as SidecarModule from '../../src/sidecar/index.js';

/** A module of the build in dist/, e.g. `sidecar/index.js`. */
export function distUrl(path: string): string {
  return new URL(`../../dist/${path}`, import.meta.url).href;
}

if (!existsSync(fileURLToPath(distUrl('sidecar/index.js')))) throw new Error('dist/ is missing: run `npm run build` first');
const { createRoot, newKeyPem, signCa, signLeaf } = (await import(distUrl('ca/index.js'))) as typeof CaModule;
export const { Sidecar } = (await import(distUrl('sidecar/index.js'))) as typeof SidecarModule;

export const TD = 'bench.isthmus';
const DAY_MS = 86_400_000;
export const root = await createRoot({ trustDomain: TD, commonName: 'bench root', ttlMs: DAY_MS });
const interKey = await newKeyPem();
export const inter = await signCa({ signer: root, subjectKeyPem: interKey, commonName: 'bench inter', trustDomain: TD, ttlMs: DAY_MS, pathLength: 0 });
export const bundle = { roots: [root.certPem], chain: [inter.certPem] };

/** A leaf of service `svc` in dc1 (with DNS SANs when a proxy checks the server name against them). */
export async function leaf(svc: string, dnsNames: string[] = []) {
  const spiffeId = `spiffe://${TD}/ns/default/dc/dc1/svc/${svc}`;
  const l = await signLeaf({ signer: { certPem: inter.certPem, keyPem: interKey }, spiffeId, dnsNames, commonName: svc, ttlMs: DAY_MS });
  return { certPem: l.certPem, keyPem: l.keyPem, spiffeId };
}

/**
 * The same certificates for HAProxy, in `dir`: per leaf `<name>.pem` (cert + chain + key in one file),
 * and root.pem, the CA file. (HAProxy checks the server name it sends against the DNS SANs.)
 */
export function writeProxyPems(dir: string, leaves: Record<string, { certPem: string; keyPem: string }>): void {
  const pem = (...parts: string[]) => parts.map((p) => p.trim()).join('\n') + '\n';
  writeFileSync(join(dir, 'root.pem'), pem(root.certPem));
  for (const [name, l] of Object.entries(leaves)) writeFileSync(join(dir, `${name}.pem`), pem(l.certPem, inter.certPem, l.keyPem));
}

export const svc = (name: string) => ({ id: `${name}-sidecar-proxy`, name, namespace: 'default', dc: 'dc1', trustDomain: TD });

/** The policy the api side enforces: one intention web => api (allow, or L7 permissions), nothing else. */
export function webToApi(rule: Pick<IntentionsModule.Intention, 'Action' | 'Permissions'>, defaultAllow = false) {
  return {
    intentions: [
      {
        ID: 'i1',
        Description: '',
        SourceNS: 'default',
        SourceName: 'web',
        DestinationNS: 'default',
        DestinationName: 'api',
        SourceType: 'consul' as const,
        ...rule,
        Precedence: 9,
        Meta: {},
        CreatedAt: '',
        UpdatedAt: '',
      },
    ],
    defaultAllow,
    index: 1,
    sourceDc: 'dc1',
  };
}
