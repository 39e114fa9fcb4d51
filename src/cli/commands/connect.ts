// `isthmus connect proxy`: runs a sidecar fed by the local server over the data-plane stream, and
// optionally the application itself (`-- CMD ARGS`) with <UPSTREAM>_ADDR / <UPSTREAM>_PORT set.
import { spawn, type ChildProcess } from 'node:child_process';
import { DataPlaneClient, type SidecarConfigMessage } from '../../dataplane/index.js';
import { Sidecar, type SidecarConfig } from '../../sidecar/index.js';
import type { Intention } from '../../intentions/index.js';
import { createLogger } from '../../telemetry/index.js';
import { str } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';

export function toSidecarConfig(m: SidecarConfigMessage): SidecarConfig {
  if (!m.service || !m.leaf || !m.bundle || !m.intentions) throw new CliError('the server sent an incomplete sidecar configuration');
  return {
    service: m.service,
    leaf: { certPem: m.leaf.certPem, keyPem: m.leaf.keyPem, spiffeId: m.leaf.spiffeId },
    bundle: { roots: m.bundle.roots, chain: m.bundle.chain },
    ...(m.inbound && m.inbound.bindPort
      ? { inbound: { bindHost: m.inbound.bindHost, bindPort: m.inbound.bindPort, localAppHost: m.inbound.localAppHost, localAppPort: m.inbound.localAppPort, protocol: m.inbound.protocol === 'http' ? 'http' : 'tcp' } }
      : {}),
    upstreams: m.upstreams.map((u) => ({ ...u, endpoints: u.endpoints.map((e) => ({ ...e })) })),
    policy: { intentions: JSON.parse(m.intentions.intentionsJson) as Intention[], defaultAllow: m.intentions.defaultAllow, index: m.intentions.index, sourceDc: m.intentions.sourceDc },
  };
}

export const connectProxy: Command = {
  name: 'connect proxy',
  summary: 'Run a sidecar proxy for a registered service (or an unregistered one), optionally with its app',
  usage: 'isthmus connect proxy (--sidecar-for SERVICE_ID | --service NAME) [--grpc-addr HOST:PORT] [--token TOKEN] [-- CMD ARGS...]',
  options: {
    'sidecar-for': { type: 'string' },
    'proxy-id': { type: 'string' },
    service: { type: 'string' },
    'grpc-addr': { type: 'string' },
    token: { type: 'string' },
    'log-level': { type: 'string' },
  },
  async run(p, io) {
    const sidecarFor = str(p.values['sidecar-for']);
    const service = str(p.values.service);
    if (!sidecarFor && !service && !str(p.values['proxy-id'])) throw new CliError(`--sidecar-for or --service is required\nUsage: ${this.usage}`);
    const serverAddr = str(p.values['grpc-addr']) ?? io.env.ISTHMUS_GRPC_ADDR ?? '127.0.0.1:8502';
    const level = (str(p.values['log-level']) ?? 'info') as 'info';
    const logger = createLogger({ level });
    let sidecar: Sidecar | undefined;
    let app: ChildProcess | undefined;
    let fatal: string | undefined;
    let ready: () => void = () => {};
    const started = new Promise<void>((r) => (ready = r));
    let updating = Promise.resolve();

    const client = new DataPlaneClient({
      serverAddr,
      serviceId: str(p.values['proxy-id']) ?? (sidecarFor ? `${sidecarFor}-sidecar-proxy` : undefined),
      service,
      token: str(p.values.token) ?? io.env.ISTHMUS_HTTP_TOKEN,
      logger,
      onConfig: (m) => {
        updating = updating.then(async () => {
          const cfg = toSidecarConfig(m);
          if (!sidecar) {
            const s = new Sidecar({ config: cfg, onFlow: (r) => client.report(r), logger });
            await s.start();
            sidecar = s;
            io.out(`==> Sidecar for ${cfg.service.name} (${cfg.service.id}) running as ${cfg.leaf.spiffeId}`);
            if (cfg.inbound) io.out(`    inbound: ${cfg.inbound.bindHost}:${sidecar.inboundPort} -> ${cfg.inbound.localAppHost}:${cfg.inbound.localAppPort} (${cfg.inbound.protocol})`);
            for (const u of cfg.upstreams) io.out(`    upstream ${u.name}: ${u.localBindHost}:${sidecar.upstreamPort(u.name, u.datacenter)} (${u.endpoints.length} endpoint(s))`);
            ready();
          } else {
            await sidecar.update(cfg);
          }
        }).catch((err) => {
          logger.error('cannot apply the sidecar configuration', { error: err });
          // A sidecar that could not even start (a port taken) has nothing to keep serving: stop.
          if (!sidecar?.started) {
            fatal = `cannot start the sidecar: ${(err as Error).message}`;
            ready();
          }
        });
      },
      onFatal: (code, message) => {
        fatal = `${message} (${code})`;
        ready();
      },
    });
    client.start();
    await started;
    if (fatal) {
      client.stop();
      throw new CliError(fatal);
    }

    if (p.rest.length > 0) {
      const env: NodeJS.ProcessEnv = { ...io.env };
      await updating;
      for (const u of sidecarUpstreams(sidecar!)) {
        const key = u.name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
        env[`${key}_ADDR`] = `${u.host}:${u.port}`;
        env[`${key}_PORT`] = String(u.port);
      }
      app = spawn(p.rest[0], p.rest.slice(1), { stdio: 'inherit', env });
      app.on('exit', (code) => {
        io.out(`==> Application exited with ${code}`);
        process.kill(process.pid, 'SIGTERM');
      });
    }

    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    app?.kill('SIGTERM');
    client.stop();
    await sidecar?.stop();
    return 0;
  },
};

function sidecarUpstreams(s: Sidecar): { name: string; host: string; port: number }[] {
  return s.upstreams().map((u) => ({ name: u.name, host: u.localBindHost, port: s.upstreamPort(u.name, u.datacenter) }));
}
