// The composition root of `isthmus connect proxy`: from a ProxyConfig, a sidecar fed by the local
// server over the data-plane stream (started on the first configuration, updated on every later
// one), and optionally the application itself with <UPSTREAM>_ADDR / <UPSTREAM>_PORT set; stopped in
// reverse. A folder of its own beside region/ (as Kuma has one bootstrap per binary under app/), so
// that a sidecar process loads the sidecar, its client and its config, and none of the server.
import { spawn, type ChildProcess } from 'node:child_process';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import { redactProxyConfig, type ProxyConfig } from '../config/proxy-config.js';
import { DataPlaneClient, refusal, toSidecarConfig } from '../dataplane-client/index.js';
import { Sidecar, type SidecarConfig } from '../sidecar/index.js';
import { createLogger, type Logger } from '../telemetry/index.js';

export interface SidecarProcess {
  readonly config: ProxyConfig;
  /** The running proxy: its ports and its current upstreams. */
  readonly sidecar: Sidecar;
  /** The first configuration the server sent, which the sidecar started with. */
  readonly initial: SidecarConfig;
  /** With an application: resolves with its exit code (null when killed or never started) once it exits. */
  readonly appExit: Promise<number | null> | undefined;
  stop(): Promise<void>;
}

export interface StartSidecarProxyOptions {
  logger?: Logger;
  /** An application to start once the sidecar is up, with each upstream's local address in its environment. */
  app?: { argv: string[]; env?: NodeJS.ProcessEnv };
}

/**
 * Resolves once the sidecar runs its first configuration; rejects with the server's refusal (its
 * code: an unknown service, a token that may not write it) or when the sidecar cannot start.
 */
export async function startSidecarProxy(config: ProxyConfig, opts: StartSidecarProxyOptions = {}): Promise<SidecarProcess> {
  const logger = opts.logger ?? createLogger({ level: config.logLevel });
  let sidecar: Sidecar | undefined;
  let initial: SidecarConfig | undefined;
  let failed: IsthmusError | undefined;
  let ready: () => void = () => {};
  const started = new Promise<void>((r) => (ready = r));
  let updating = Promise.resolve();

  const client = new DataPlaneClient({
    serverAddr: config.serverAddr,
    serviceId: config.proxyId,
    service: config.service,
    token: config.token,
    logger,
    onConfig: (m) => {
      updating = updating
        .then(async () => {
          const cfg = toSidecarConfig(m);
          if (!sidecar) {
            const s = new Sidecar({ config: cfg, onFlow: (r) => client.report(r), logger });
            await s.start();
            sidecar = s;
            initial = cfg;
            ready();
          } else {
            await sidecar.update(cfg);
          }
        })
        .catch((err) => {
          logger.error('cannot apply the sidecar configuration', { error: err });
          // A sidecar that could not even start (a port taken) has nothing to keep serving: stop.
          if (!sidecar?.started) {
            failed = new IsthmusError(ErrorCodes.UNAVAILABLE, `cannot start the sidecar: ${(err as Error).message}`, { cause: err });
            ready();
          }
        });
    },
    onFatal: (code, message) => {
      failed = refusal(code, message);
      ready();
    },
  });
  client.start();
  await started;
  if (failed || !sidecar || !initial) {
    client.stop();
    throw failed ?? new IsthmusError(ErrorCodes.INTERNAL, 'the sidecar did not start');
  }
  const running = sidecar;
  logger.info('sidecar started', { config: redactProxyConfig(config), service: initial.service.id, spiffeId: initial.leaf.spiffeId });

  let app: ChildProcess | undefined;
  let appExit: Promise<number | null> | undefined;
  if (opts.app && opts.app.argv.length > 0) {
    const env: NodeJS.ProcessEnv = { ...(opts.app.env ?? process.env) };
    // The ports of the upstreams of every configuration received so far.
    await updating;
    for (const u of running.upstreams()) {
      const key = u.name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
      const port = running.upstreamPort(u.name, u.datacenter);
      env[`${key}_ADDR`] = `${u.localBindHost}:${port}`;
      env[`${key}_PORT`] = String(port);
    }
    const [command, ...args] = opts.app.argv;
    const child = spawn(command, args, { stdio: 'inherit', env });
    app = child;
    appExit = new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.once('error', (err) => {
        logger.error('cannot start the application', { command, error: err });
        resolve(null);
      });
    });
  }

  return {
    config,
    sidecar: running,
    initial,
    appExit,
    stop: async () => {
      if (app && app.exitCode === null && app.signalCode === null) app.kill('SIGTERM');
      client.stop();
      await running.stop();
    },
  };
}
