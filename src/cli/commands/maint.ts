// `isthmus maint`: Consul's `consul maint`, with its flags and its lines, to put this server's node
// or one of its services in or out of maintenance, or (without -enable/-disable) list what is.
import { str, type OptionSpec } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';
import { CLIENT_OPTIONS, clientFor } from '../http-client.js';

const options: OptionSpec = {
  ...CLIENT_OPTIONS,
  enable: { type: 'boolean' },
  disable: { type: 'boolean' },
  reason: { type: 'string' },
  service: { type: 'string' },
};

interface AgentCheck {
  Node: string;
  CheckID: string;
  ServiceID: string;
  Notes: string;
}

// The check IDs Consul's agent gives its maintenance checks (the server's catalog owns them; the CLI
// only reads them back, as `consul maint` does).
const NODE_CHECK = '_node_maintenance';
const SERVICE_PREFIX = '_service_maintenance:';

export const maintCommand: Command = {
  name: 'maint',
  summary: 'Put the node or a service in or out of maintenance mode, or list what is in it',
  usage: 'isthmus maint [-enable|-disable] [-service ID] [-reason TEXT] [-http-addr ADDR] [-token TOKEN]',
  options,
  async run({ values, positionals }, io) {
    const enable = values.enable === true;
    const disable = values.disable === true;
    const reason = str(values.reason) ?? '';
    const service = str(values.service) ?? '';
    // Consul's own checks and wording, so scripts written for `consul maint` read the same.
    if (positionals.length) throw new CliError(`unexpected argument "${positionals[0]}"\nUsage: ${maintCommand.usage}`);
    if (enable && disable) throw new CliError('Only one of -enable or -disable may be provided');
    if (!enable && reason !== '') throw new CliError('Reason may only be provided with -enable');
    if (!enable && !disable && service !== '') throw new CliError('Service requires either -enable or -disable');
    const api = clientFor(values, io.env);

    if (!enable && !disable) {
      const checks = (await api.get<Record<string, AgentCheck>>('/v1/agent/checks')) ?? {};
      for (const check of Object.values(checks).sort((a, b) => (a.CheckID < b.CheckID ? -1 : 1))) {
        if (check.CheckID === NODE_CHECK) io.out(['Node:', `  Name:   ${check.Node}`, `  Reason: ${check.Notes}`, ''].join('\n'));
        else if (check.CheckID.startsWith(SERVICE_PREFIX)) io.out(['Service:', `  ID:     ${check.ServiceID}`, `  Reason: ${check.Notes}`, ''].join('\n'));
      }
      return 0;
    }

    const query = new URLSearchParams({ enable: String(enable) });
    if (enable) query.set('reason', reason);
    const action = enable ? 'enabled' : 'disabled';
    if (service === '') {
      await api.put(`/v1/agent/maintenance?${query}`);
      io.out(`Node maintenance is now ${action}`);
    } else {
      await api.put(`/v1/agent/service/maintenance/${encodeURIComponent(service)}?${query}`);
      io.out(`Service maintenance is now ${action} for ${JSON.stringify(service)}`);
    }
    return 0;
  },
};
