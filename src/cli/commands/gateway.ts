// `isthmus gateway`: its flags (and --config file, and environment) into one GatewayConfig,
// startGateway, what it listens on printed; stops on SIGINT/SIGTERM, or with the server's refusal.
import { GATEWAY_FLAGS } from '../../config/settings.js';
import { str, stringFlags, type OptionSpec } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';
import { nextSignal } from '../signals.js';

const options: OptionSpec = { config: { type: 'string' } };
for (const f of GATEWAY_FLAGS) options[f] = { type: 'string' };

export const gatewayCommand: Command = {
  name: 'gateway',
  summary: 'Run a mesh gateway: routes TLS by SNI to local sidecars and to other datacenters, never decrypting',
  usage:
    'isthmus gateway [--config FILE] [--dc DC] [--addr HOST:PORT] [--wan-addr HOST:PORT] [--server HOST:PORT] [--token TOKEN] [--id ID] [--name NAME] [--metrics-addr HOST:PORT] [--max-connections N] [--workers N] [--hello-timeout DURATION] [--idle-timeout DURATION] [--fast-path on|off] [--pump on|auto|off] [--log-level LEVEL]',
  options,
  async run(p, io) {
    if (p.positionals.length) throw new CliError(`unexpected argument "${p.positionals[0]}"\nUsage: ${this.usage}`);
    // Loaded when the command runs: `isthmus --help` and the client commands never pay for them.
    const [{ loadGatewayConfig }, { startGateway }] = await Promise.all([import('../../config/gateway-config.js'), import('../../gateway-process/index.js')]);
    const config = loadGatewayConfig({ flags: stringFlags(p.values, GATEWAY_FLAGS), env: io.env, configFile: str(p.values.config) });
    const gw = await startGateway(config);
    io.out(`==> Mesh gateway ${gw.id} (datacenter ${config.dc}) listening on ${gw.address}`);
    io.out(`    LAN: ${gw.lanAddress}   WAN: ${gw.wanAddress}   server: ${config.serverAddr}${gw.metricsUrl ? `   metrics: ${gw.metricsUrl}` : ''}`);

    const signal = nextSignal();
    const refused = await Promise.race([signal.promise.then(() => undefined), gw.refused]);
    signal.dispose();
    io.out('==> Shutting down');
    await gw.stop();
    if (refused) throw refused;
    return 0;
  },
};
