// `isthmus dev` and `isthmus server`: load the config, start the region, stop cleanly on a signal.
import type { Mode } from '../../config/index.js';
import { CONFIG_FLAGS, type ConfigFlags } from '../../config/settings.js';
import { str, stringFlags, type OptionSpec, type Parsed } from '../args.js';
import type { Command, Io } from '../command.js';

const options: OptionSpec = { config: { type: 'string' } };
for (const f of CONFIG_FLAGS) options[f] = { type: 'string' };

function agentCommand(mode: Mode): Command {
  return {
    name: mode,
    summary: mode === 'dev' ? 'Run a single-DC development server (in memory, ACL default allow)' : 'Run the control plane of one datacenter',
    usage: `isthmus ${mode} [--config FILE] [--dc DC] [--http-addr HOST:PORT] [--grpc-addr HOST:PORT] [--grpc-tls-addr HOST:PORT] [--primary-dc DC] [--join-token TOKEN] [--data-dir DIR] [--store memory|redis] [--redis-url URL] [--acl-default-policy allow|deny] [--log-level LEVEL]`,
    options,
    run: (args, io) => runAgent(mode, args, io),
  };
}

async function runAgent(mode: Mode, args: Parsed, io: Io): Promise<number> {
  const flags: ConfigFlags = stringFlags(args.values, CONFIG_FLAGS);
  // Loaded when the command runs: `isthmus --help` and the client commands never pay for the server.
  const [{ loadRegionConfig, redactConfig }, { startRegion }] = await Promise.all([import('../../config/index.js'), import('../../region/index.js')]);
  const config = loadRegionConfig({ mode, flags, env: io.env, configFile: str(args.values.config) });
  const region = await startRegion(config);
  io.out(`==> Isthmus ${mode} running: datacenter ${config.dc}, node ${config.nodeName}`);
  // Where acknowledged writes live: the data dir, Redis (its URL without credentials), or nowhere.
  const persists =
    config.store === 'redis'
      ? `in Redis at ${redactConfig(config).redisUrl}`
      : config.dataDir
        ? `in ${config.dataDir}`
        : 'nowhere: in memory only, lost when it stops';
  io.out(`    HTTP API: http://${region.httpAddress}   gRPC: ${region.grpcAddress}   store: ${config.store}, persisted ${persists}`);
  io.out(`    trust domain: ${region.trustDomain}   ACL default policy: ${config.aclDefaultPolicy}`);
  io.out(`    federation: ${region.federation.address}   primary datacenter: ${region.config.primaryDc}${region.federation.isPrimary ? ' (this one)' : ''}`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  io.out('==> Shutting down');
  await region.stop();
  return 0;
}

export const devCommand = agentCommand('dev');
export const serverCommand = agentCommand('server');
