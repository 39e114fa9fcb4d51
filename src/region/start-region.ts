// The composition root: builds one region's server from a RegionConfig (store -> catalog ->
// intentions -> acl -> api) and stops it in reverse. The CLI, npm start and the tests call it.
import type { Registry } from 'prom-client';
import { ComponentGroup, type Component } from '../core/lifecycle.js';
import { VERSION } from '../core/version.js';
import type { RegionConfig } from '../config/index.js';
import { splitHostPort, redactConfig } from '../config/index.js';
import { createStore, type Store } from '../store/index.js';
import { Catalog, CheckRunner } from '../catalog/index.js';
import { Intentions } from '../intentions/index.js';
import { ConfigEntries } from '../config-entries/index.js';
import { Acl } from '../acl/index.js';
import { CertificateAuthority, LeafCache } from '../ca/index.js';
import { createApi, listenHttp, type HttpListener } from '../api/index.js';
import { createLogger, createRegistry, type Logger } from '../telemetry/index.js';
import { ensureTrustDomain } from './trust-domain.js';
import { destinationProtocol, sidecarProtocol } from './protocols.js';
import { createFlowStore, observeFlows, type FlowStore } from '../dataflow/index.js';
import { DataPlaneServer } from '../dataplane/index.js';
import { Federation, joinedAs } from '../federation/index.js';
import { ErrorCodes, IsthmusError } from '../core/errors.js';

export interface Region {
  readonly config: RegionConfig;
  readonly store: Store;
  readonly catalog: Catalog;
  readonly intentions: Intentions;
  readonly configEntries: ConfigEntries;
  readonly acl: Acl;
  readonly ca: CertificateAuthority;
  readonly leaves: LeafCache;
  readonly flows: FlowStore;
  readonly dataplane: DataPlaneServer;
  readonly federation: Federation;
  /** host:port of the gRPC (data plane) listener. */
  readonly grpcAddress: string;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly trustDomain: string;
  /** host:port the HTTP API is bound to (port 0 resolved). */
  readonly httpAddress: string;
  stop(): Promise<void>;
}

export interface StartRegionOptions {
  logger?: Logger;
  /** Collect process metrics (off when several regions share one process). */
  processMetrics?: boolean;
  /** Federation heartbeat period (tests make it short). */
  heartbeatMs?: number;
  /**
   * Run this node's health checks (default true). Off, check results are never written: for a
   * region whose store must change only by the requests it is sent (the API fuzzers).
   */
  runChecks?: boolean;
}

export async function startRegion(config: RegionConfig, opts: StartRegionOptions = {}): Promise<Region> {
  const logger = (opts.logger ?? createLogger({ level: config.logLevel })).child({ dc: config.dc, node: config.nodeName });
  const registry = createRegistry({ dc: config.dc, node: config.nodeName }, { processMetrics: opts.processMetrics });
  const group = new ComponentGroup();
  const { host, port } = splitHostPort(config.httpAddr);

  // Bind the HTTP port first: with port 0 the advertised address is only known once bound.
  let listener: HttpListener | undefined;
  const http: Component = {
    name: 'http',
    start: async () => {
      listener = await listenHttp(host, port, { 'X-Consul-Default-ACL-Policy': config.aclDefaultPolicy });
    },
    stop: async () => {
      await listener?.close();
    },
  };
  await group.start([http]);
  if (splitHostPort(config.advertiseAddr).port === 0) config = { ...config, advertiseAddr: listener!.address };

  const store = createStore(
    config.store === 'redis'
      ? { backend: 'redis', dc: config.dc, advertiseAddr: config.advertiseAddr, redisUrl: config.redisUrl! }
      : { backend: 'memory', dc: config.dc, advertiseAddr: config.advertiseAddr, dataDir: config.dataDir },
  );
  try {
    await group.start([store]);
    // Several servers of one DC on one Redis: leader-only work runs in the one that leads.
    group.leadBy(store, logger.child({ component: 'leadership' }));
    // A DC that joined keeps the primary it joined, whatever a later start says by default.
    const joined = joinedAs(store);
    if (joined && joined.PrimaryDatacenter !== config.primaryDc) {
      if (config.primaryDc !== config.dc) {
        throw new IsthmusError(
          ErrorCodes.BAD_CONFIG,
          `datacenter ${config.dc} joined primary ${joined.PrimaryDatacenter}; --primary-dc ${config.primaryDc} disagrees`,
        );
      }
      config = { ...config, primaryDc: joined.PrimaryDatacenter };
    }
    const trustDomain = await ensureTrustDomain(store, config.joinToken?.trustDomain);
    const nodeAddress = splitHostPort(config.advertiseAddr).host;
    const catalog = new Catalog({ store, dc: config.dc, nodeName: config.nodeName, nodeAddress });
    const intentions: Intentions = new Intentions({
      store,
      dc: config.dc,
      defaultAllow: () => config.aclDefaultPolicy === 'allow',
      trustDomain: () => trustDomain,
      // A secondary's intentions and ACL come from the primary by replication, never a local write.
      primary: config.dc === config.primaryDc,
      // L7 permissions for a destination whose sidecars cannot parse its requests are refused.
      protocolOf: ({ name }) => destinationProtocol(configEntries, catalog, name),
    });
    // Config entries, like intentions, are written at the primary and replicate from there.
    const configEntries: ConfigEntries = new ConfigEntries({
      store,
      dc: config.dc,
      primary: config.dc === config.primaryDc,
      // The other way round: no protocol change that leaves L7 intentions unenforceable.
      l7Intentions: () =>
        intentions
          .list()
          .filter((i) => (i.Permissions?.length ?? 0) > 0 && i.DestinationNS === 'default')
          .map((i) => ({ destination: i.DestinationName, id: i.ID })),
      fallbackProtocol: (service) => sidecarProtocol(catalog, service),
    });
    const acl = new Acl({ store, dc: config.dc, defaultPolicy: config.aclDefaultPolicy, primary: config.dc === config.primaryDc });
    const checks = new CheckRunner({ store, catalog, nodeName: config.nodeName, logger: logger.child({ component: 'checks' }) });
    let federation: Federation | undefined;
    const ca = new CertificateAuthority({
      store,
      dc: config.dc,
      primary: config.dc === config.primaryDc,
      trustDomain: () => trustDomain,
      logger,
      signRemote: (dc, publicKeyPem) => federation!.signRemote(dc, publicKeyPem),
    });
    const fedHostPort = splitHostPort(config.grpcTlsAddr);
    federation = new Federation({
      store,
      catalog,
      ca,
      dc: config.dc,
      primaryDc: config.primaryDc,
      trustDomain: () => trustDomain,
      host: fedHostPort.host,
      port: fedHostPort.port,
      joinToken: config.joinToken,
      version: VERSION,
      logger,
      registry,
      heartbeatMs: opts.heartbeatMs ?? config.federationHeartbeatMs,
      configEntries,
    });
    const leaves = new LeafCache(ca);
    await group.start([catalog, intentions, configEntries, acl, ...(opts.runChecks === false ? [] : [checks])].filter(isComponent));
    await federation.join();
    await group.start([ca, federation, ...federation.leaderDuties]);
    const flows = createFlowStore(
      config.store === 'redis'
        ? { backend: 'redis', dc: config.dc, redisUrl: config.redisUrl!, logger: logger.child({ component: 'flows' }) }
        : { backend: 'memory', logger: logger.child({ component: 'flows' }) },
    );
    await group.start([flows]);
    observeFlows(flows, registry);
    const grpcHostPort = splitHostPort(config.grpcAddr);
    const dataplane = new DataPlaneServer({
      catalog,
      intentions,
      ca,
      leaves,
      acl,
      flows,
      dc: config.dc,
      trustDomain: () => trustDomain,
      defaultAllow: () => config.aclDefaultPolicy === 'allow',
      host: grpcHostPort.host,
      port: grpcHostPort.port,
      logger,
      // Cross-DC upstreams and gateway routes read the other DCs from it; pushes follow its changes.
      federation,
      configEntries,
    });
    await group.start([dataplane]);

    const app = createApi({
      store,
      catalog,
      intentions,
      configEntries,
      acl,
      ca,
      leaves,
      flows,
      registry,
      logger,
      dc: config.dc,
      primaryDc: config.primaryDc,
      nodeName: config.nodeName,
      version: VERSION,
      aclDefaultPolicy: config.aclDefaultPolicy,
      trustDomain: () => trustDomain,
      datacenters: () => federation!.datacenters(),
      federation,
    });
    federation.setForwardHandler(async (req) => {
      const res = await app.request(
        req.path,
        {
          method: req.method,
          body: req.method === 'GET' ? undefined : req.body,
          headers: { 'content-type': 'application/json', ...(req.token ? { 'x-consul-token': req.token } : {}) },
        },
        { originDc: req.originDc },
      );
      return {
        status: res.status,
        body: await res.text(),
        contentType: res.headers.get('content-type') ?? 'application/json',
        receiptsJson: res.headers.get('x-isthmus-receipts') ?? '',
      };
    });
    listener!.serve(app);
    logger.info('region started', { config: redactConfig(config), http: listener!.address, trustDomain, store: store.backend });

    return {
      config,
      store,
      catalog,
      intentions,
      configEntries,
      acl,
      ca,
      leaves,
      flows,
      dataplane,
      federation,
      grpcAddress: dataplane.address,
      registry,
      logger,
      trustDomain,
      httpAddress: listener!.address,
      stop: async () => {
        // Stop taking requests before the parts they use go away.
        await listener?.close();
        await group.stop();
        logger.info('region stopped');
      },
    };
  } catch (err) {
    await group.stop();
    throw err;
  }
}

function isComponent(x: unknown): x is Component {
  return typeof (x as Component)?.start === 'function' && typeof (x as Component)?.stop === 'function';
}
