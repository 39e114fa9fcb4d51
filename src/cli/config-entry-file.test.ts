// Config entry files decode as `consul config write` decodes them: HCL v1 or JSON, either casing.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CliError } from './cli-error.js';
import { fieldName, parseConfigEntry, readConfigEntryFile } from './config-entry-file.js';

const DATA = fileURLToPath(new URL('./testdata/config-entries/', import.meta.url));
const read = (f: string) => readConfigEntryFile(join(DATA, f));

const SERVICE_DEFAULTS = {
  Kind: 'service-defaults',
  Name: 'web',
  Protocol: 'http',
  MeshGateway: { Mode: 'local' },
  UpstreamConfig: {
    Defaults: {
      ConnectTimeoutMs: 5000,
      Limits: { MaxConnections: 512 },
      PassiveHealthCheck: { Interval: '10s', MaxFailures: 5, EnforcingConsecutive5xx: 100 },
    },
  },
  // Meta keys are the user's: never renamed.
  Meta: { owner_team: 'payments' },
};

const RESOLVER = {
  Kind: 'service-resolver',
  Name: 'api',
  DefaultSubset: 'v1',
  ConnectTimeout: '15s',
  Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2', OnlyPassing: true } },
  Failover: { '*': { Datacenters: ['dc2', 'dc3'] }, v2: { Targets: [{ Datacenter: 'dc3', ServiceSubset: 'v2' }] } },
  LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x-user-id' }] },
};

const SPLITTER = {
  Kind: 'service-splitter',
  Name: 'api',
  Splits: [
    { Weight: 90, ServiceSubset: 'v1' },
    { Weight: 10, ServiceSubset: 'v2', RequestHeaders: { Set: { 'x-canary': 'true' } } },
  ],
};

const ROUTER = {
  Kind: 'service-router',
  Name: 'web',
  Routes: [
    {
      Match: { HTTP: { PathPrefix: '/admin', Header: [{ Name: 'x-debug', Exact: '1' }] } },
      Destination: { Service: 'admin', PrefixRewrite: '/', RequestTimeout: '2s', NumRetries: 3, RetryOnStatusCodes: [503] },
    },
  ],
};

describe('config entry files', () => {
  it('service-defaults in PascalCase and in snake_case HCL give the same entry', async () => {
    expect(await read('service-defaults.hcl')).toEqual(SERVICE_DEFAULTS);
    expect(await read('service-defaults-snake.hcl')).toEqual(SERVICE_DEFAULTS);
  });

  it('service-resolver: subset and failover names kept, their contents renamed, one-element lists stay lists', async () => {
    expect(await read('service-resolver.hcl')).toEqual(RESOLVER);
    expect(await read('service-resolver-snake.hcl')).toEqual(RESOLVER);
  });

  it('service-splitter in HCL and in snake_case JSON; header names kept', async () => {
    expect(await read('service-splitter.hcl')).toEqual(SPLITTER);
    expect(await read('service-splitter-snake.json')).toEqual(SPLITTER);
  });

  it("service-router with Consul's block syntax inside a list, and the same in JSON", async () => {
    expect(await read('service-router.hcl')).toEqual(ROUTER);
    expect(await read('service-router.json')).toEqual(ROUTER);
  });

  it('a lone value where Consul has a list becomes a list (mapstructure WeaklyTypedInput)', async () => {
    const e = await parseConfigEntry('Kind = "service-resolver"\nName = "api"\nFailover { "*" { Datacenters = "dc2" } }\n', 'x.hcl');
    expect(e.Failover).toEqual({ '*': { Datacenters: ['dc2'] } });
  });

  it('snake_case keys it does not know still come out CamelCase, with Consul capitals', () => {
    expect(fieldName('path_prefix')).toBe('PathPrefix');
    expect(fieldName('http')).toBe('HTTP');
    expect(fieldName('external_sni')).toBe('ExternalSNI');
    expect(fieldName('some_new_tls_field')).toBe('SomeNewTLSField');
    expect(fieldName('AlreadyCamel')).toBe('AlreadyCamel');
  });

  it('refuses a file that does not parse, naming the file and the line', async () => {
    const err = await read('bad-syntax.hcl').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as Error).message).toMatch(/bad-syntax\.hcl:3:\d+: not valid HCL: literal not terminated/);
    const json = await read('bad.json').catch((e: unknown) => e);
    expect(json).toBeInstanceOf(CliError);
    expect((json as Error).message).toMatch(/bad\.json: not valid JSON: .*line 3/);
  });

  it('refuses an entry without Kind or Name, naming the file', async () => {
    await expect(read('no-name.hcl')).rejects.toThrow(/no-name\.hcl: the service-defaults entry has no Name/);
    await expect(read('no-kind.json')).rejects.toThrow(/no-kind\.json: the config entry has no Kind/);
    await expect(parseConfigEntry('["x"]', 'list.json')).rejects.toThrow(/list\.json: a config entry must be an object/);
  });

  it('refuses a file that cannot be read', async () => {
    await expect(read('missing.hcl')).rejects.toThrow(/cannot read .*missing\.hcl: ENOENT/);
  });
});
