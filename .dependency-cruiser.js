// The import floors of src/ (STYLE.md, Boundaries): no cycle, other domains only through their
// index.ts, and no arrow running back up the layers. Checked on resolved paths, so a bare
// `import '…'`, an `export … from '…'`, an `import()` and an `import type` all count.

/**
 * The layers, lowest first. A folder may import its own layer and the ones below, never one above.
 * Read off today's imports: `netio` (Node's internals behind one interface) sits with `core`;
 * `config` decodes the join token with federation's decoder, so it sits with federation rather than
 * with the domains; `dataplane-client` (the sidecar's and gateway's side of the data-plane stream)
 * sits there too; `dataplane` serves sidecars and gateways and reads federation's view, so it sits
 * with `api`; each binary's start-up (`region` for the server, `gateway-process`, `sidecar-process`)
 * sits above everything but the CLI.
 */
export const layers = [
  { name: 'core', folders: ['core', 'netio'] },
  { name: 'store', folders: ['store'] },
  { name: 'domains', folders: ['acl', 'ca', 'catalog', 'config-entries', 'dataflow', 'intentions', 'telemetry'] },
  { name: 'services', folders: ['federation', 'gateway', 'sidecar', 'config', 'dataplane-client'] },
  { name: 'edges', folders: ['api', 'dataplane'] },
  { name: 'region', folders: ['region', 'gateway-process', 'sidecar-process'] },
  { name: 'cli', folders: ['cli'] },
];

const folders = (list) => `^src/(${list.join('|')})/`;
const known = [...layers.flatMap((l) => l.folders), 'ui'];

const layerRules = layers.slice(0, -1).map((layer, i) => {
  const above = layers.slice(i + 1).flatMap((l) => l.folders);
  return {
    name: `no-arrow-up-from-${layer.name}`,
    comment: `${layer.folders.join(', ')} must not import a higher layer (${above.join(', ')})`,
    severity: 'error',
    from: { path: folders(layer.folders) },
    to: { path: folders(above) },
  };
});

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'No import cycle, type-only imports included.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'domain-through-index',
      comment:
        "Another folder under src/ is imported through its index.ts only (core/ file by file, and config/: a process imports its own loader, so a sidecar does not load the server's). A folder's testing/ helpers are open to other folders' tests (what ships never imports testing/, see not-to-test-code).",
      severity: 'error',
      from: { path: '^src/([^/]+)/' },
      // (src/ui has rules of its own below.)
      to: { path: '^src/[^/]+/', pathNot: ['^src/$1/', '^src/core/', '^src/config/', '^src/ui/', '^src/[^/]+/index\\.ts$', '^src/[^/]+/testing/'] },
    },
    {
      name: 'domain-not-top',
      comment: 'A domain folder never imports api/, cli/ or a start-up (region/, gateway-process/, sidecar-process/).',
      severity: 'error',
      from: { path: '^src/', pathNot: folders(['api', 'cli', 'region', 'gateway-process', 'sidecar-process']) },
      to: { path: folders(['api', 'cli', 'region', 'gateway-process', 'sidecar-process']) },
    },
    ...layerRules,
    {
      name: 'folder-in-a-layer',
      comment: 'Every folder under src/ has its place in `layers` above (a new folder: add it there).',
      severity: 'error',
      from: { path: '^src/', pathNot: folders(known) },
      to: {},
    },
    {
      name: 'ui-alone',
      comment: 'src/ui is served to the browser as is: it imports only its own files, and nothing imports it.',
      severity: 'error',
      from: { path: '^src/ui/' },
      to: { pathNot: '^src/ui/' },
    },
    {
      name: 'not-to-ui',
      comment: 'src/ui is browser code, read from disk by api/routes-ui.ts, never imported.',
      severity: 'error',
      from: { pathNot: '^src/ui/' },
      to: { path: '^src/ui/' },
    },
    {
      name: 'not-to-test-code',
      comment: 'What ships (tsconfig.build.json) never imports a test, a testing/ helper or test/.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['\\.test\\.ts$', '/testing/'] },
      to: { path: ['\\.test\\.ts$', '^src/.+/testing/', '^test/'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    // Type-only imports count: an `import type` from a higher layer is still an arrow up.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'],
    },
    cache: false,
  },
};
