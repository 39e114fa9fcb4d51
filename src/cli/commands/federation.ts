// `isthmus federation token|status|remove`: join tokens made at the primary, the state of every peer
// link, and taking a departed datacenter out of the federation.
import { str } from '../args.js';
import { CliError } from '../cli-error.js';
import type { Command } from '../command.js';
import { CLIENT_OPTIONS, clientFor } from '../http-client.js';
import { table } from '../output.js';
import type { FederationStatus } from '../../federation/index.js';

export const federationToken: Command = {
  name: 'federation token',
  summary: 'Make a one-time join token for a secondary datacenter (at the primary)',
  usage: 'isthmus federation token --dc DC [--ttl 24h]',
  options: { ...CLIENT_OPTIONS, dc: { type: 'string' }, ttl: { type: 'string' } },
  async run(p, io) {
    const dc = str(p.values.dc);
    if (!dc) throw new CliError(`--dc is required: the datacenter that will join\nUsage: ${this.usage}`);
    const body: Record<string, string> = { Datacenter: dc };
    if (str(p.values.ttl)) body.TTL = str(p.values.ttl)!;
    const r = await clientFor(p.values, io.env).post<{ Token: string; Expires: string; PrimaryDatacenter: string }>('/v1/federation/token', body);
    // The token alone on stdout, so that `--join-token "$(isthmus federation token --dc dc2)"` works.
    io.out(r.Token);
    io.err(
      `Join token for ${dc} (primary ${r.PrimaryDatacenter}), valid once, until ${r.Expires}. Start the secondary with: isthmus server --dc ${dc} --join-token <token>`,
    );
    return 0;
  },
};

export const federationStatus: Command = {
  name: 'federation status',
  summary: 'Show every peer datacenter: link state, heartbeat age, last acknowledged index, replication lag',
  usage: 'isthmus federation status [-o table|json]',
  options: { ...CLIENT_OPTIONS, o: { type: 'string', short: 'o' }, output: { type: 'string' } },
  async run(p, io) {
    const s = await clientFor(p.values, io.env).get<FederationStatus>('/v1/federation/status');
    const format = str(p.values.o) ?? str(p.values.output) ?? 'table';
    if (format === 'json') {
      io.out(JSON.stringify(s, null, 2));
      return 0;
    }
    if (format !== 'table') throw new CliError(`-o must be table or json, not "${format}"`);
    io.out(
      `Datacenter ${s.Datacenter}${s.Primary ? ' (primary)' : `, primary ${s.PrimaryDatacenter}, applied index ${s.AppliedIndex}`}; federation listener ${s.Address}`,
    );
    io.out(s.Leader ? 'This server leads its datacenter.' : `This server does not lead its datacenter; the leader is ${s.LeaderAddress || 'not known'}.`);
    if (s.Peers.length === 0) {
      io.out('No peer datacenters.');
      return 0;
    }
    const ms = (v: number | null) => (v === null ? '-' : v < 1000 ? `${v}ms` : `${(v / 1000).toFixed(1)}s`);
    for (const l of table(
      ['Peer', 'State', 'Direction', 'Heartbeat', 'Acked index', 'Lag', 'Export age', 'Last error'],
      s.Peers.map((x) => [
        x.Datacenter,
        x.State,
        x.Direction || '-',
        ms(x.HeartbeatAgeMs),
        String(x.LastAckedIndex),
        ms(x.ReplicationLagMs),
        ms(x.ExportAgeMs),
        x.LastError || '',
      ]),
    ))
      io.out(l);
    return s.Peers.every((x) => x.State === 'up') ? 0 : 2;
  },
};

export const federationRemove: Command = {
  name: 'federation remove',
  summary: 'Take a datacenter out of the federation (a departed one): its links close, its catalog is forgotten, its servers are refused until it joins again',
  usage: 'isthmus federation remove DC',
  options: { ...CLIENT_OPTIONS },
  async run(p, io) {
    if (p.positionals.length !== 1) throw new CliError(`expected the datacenter to remove, got ${p.positionals.length} argument(s)\nUsage: ${this.usage}`);
    const dc = p.positionals[0];
    const r = await clientFor(p.values, io.env).delete<{ Datacenter: string; ExportedServices: number }>(`/v1/federation/members/${encodeURIComponent(dc)}`);
    io.out(
      `Removed ${r.Datacenter} from the federation (${r.ExportedServices} exported service(s) forgotten). To bring it back: isthmus federation token --dc ${r.Datacenter}, then restart its server with the new --join-token.`,
    );
    return 0;
  },
};
