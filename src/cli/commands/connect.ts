// `isthmus connect proxy`: its flags (and --config file, and environment) into one ProxyConfig,
// startSidecarProxy (with the application after `--`, if any), what it serves printed; stops on
// SIGINT/SIGTERM or when the application exits.
import { PROXY_FLAGS } from '../../config/settings.js';
import { str, stringFlags, type OptionSpec } from '../args.js';
import type { Command } from '../command.js';
import { nextSignal } from '../signals.js';

const options: OptionSpec = { config: { type: 'string' } };
for (const f of PROXY_FLAGS) options[f] = { type: 'string' };

export const connectProxy: Command = {
  name: 'connect proxy',
  summary: 'Run a sidecar proxy for a registered service (or an unregistered one), optionally with its app',
  usage: 'isthmus connect proxy (--sidecar-for SERVICE_ID | --service NAME) [--config FILE] [--grpc-addr HOST:PORT] [--token TOKEN] [-- CMD ARGS...]',
  options,
  async run(p, io) {
    // Loaded when the command runs: `isthmus --help` and the client commands never pay for them.
    const [{ loadProxyConfig }, { startSidecarProxy }] = await Promise.all([import('../../config/proxy-config.js'), import('../../sidecar-process/index.js')]);
    const config = loadProxyConfig({ flags: stringFlags(p.values, PROXY_FLAGS), env: io.env, configFile: str(p.values.config) });
    const proxy = await startSidecarProxy(config, { app: p.rest.length > 0 ? { argv: p.rest, env: io.env } : undefined });
    const { sidecar, initial: cfg } = proxy;
    io.out(`==> Sidecar for ${cfg.service.name} (${cfg.service.id}) running as ${cfg.leaf.spiffeId}`);
    if (cfg.inbound)
      io.out(
        `    inbound: ${cfg.inbound.bindHost}:${sidecar.inboundPort} -> ${cfg.inbound.localAppHost}:${cfg.inbound.localAppPort} (${cfg.inbound.protocol})`,
      );
    for (const u of cfg.upstreams)
      io.out(`    upstream ${u.name}: ${u.localBindHost}:${sidecar.upstreamPort(u.name, u.datacenter)} (${u.endpoints.length} endpoint(s))`);

    const signal = nextSignal();
    const appExited = proxy.appExit?.then((code) => io.out(`==> Application exited with ${code}`));
    await Promise.race([signal.promise, ...(appExited ? [appExited] : [])]);
    signal.dispose();
    await proxy.stop();
    return 0;
  },
};
