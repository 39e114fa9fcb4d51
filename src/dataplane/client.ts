// The sidecar's end of the data-plane channel (the Stream RPC): says which service it proxies,
// takes its whole configuration on every push, reports flow records.
import { silentLogger, type Logger } from '../telemetry/index.js';
import { ChannelClient } from './channel-client.js';
import type { SidecarConfigMessage } from './proto.js';

export interface DataPlaneClientOptions {
  /** host:port of the server's gRPC listener. */
  serverAddr: string;
  serviceId?: string;
  service?: string;
  namespace?: string;
  token?: string;
  version?: string;
  logger?: Logger;
  onConfig: (config: SidecarConfigMessage) => void;
  /** A refusal the server says is final (unknown service, permission denied). */
  onFatal?: (code: string, message: string) => void;
  /** Flush flows at least this often (ms). */
  flushMs?: number;
  /** Records kept while disconnected; beyond it the oldest are dropped (and counted). */
  maxBuffered?: number;
}

export class DataPlaneClient extends ChannelClient<SidecarConfigMessage> {
  constructor(opts: DataPlaneClientOptions) {
    super({
      serverAddr: opts.serverAddr,
      method: 'stream',
      kind: 'sidecar',
      log: (opts.logger ?? silentLogger).child({ component: 'dataplane' }),
      hello: () => ({
        serviceId: opts.serviceId ?? '',
        service: opts.service ?? '',
        namespace: opts.namespace ?? 'default',
        token: opts.token ?? '',
        version: opts.version ?? '',
      }),
      onConfig: opts.onConfig,
      onFatal: opts.onFatal,
      flushMs: opts.flushMs,
      maxBuffered: opts.maxBuffered,
    });
  }
}
