// `isthmus demo` (what `npm start` runs): three federated regions on loopback with demo services,
// traffic (one path denied) and the dashboard; Ctrl-C stops every process it started.
import { intFlag, str } from '../args.js';
import type { Command } from '../command.js';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'Run three federated regions on 127.0.1.1, 127.0.2.1, 127.0.3.1 with demo services, traffic and the dashboard',
  usage: 'isthmus demo [--rate REQUESTS_PER_SECOND] [--data-dir DIR]',
  options: { rate: { type: 'string' }, 'data-dir': { type: 'string' }, 'log-level': { type: 'string' } },
  async run(p, io) {
    const rate = intFlag(str(p.values.rate), 'rate', 0, 1000) ?? 4;
    // Loaded when the command runs: `isthmus --help` and the client commands never pay for them.
    const [{ startDemo }, { createLogger }] = await Promise.all([import('../../region/index.js'), import('../../telemetry/index.js')]);
    const logger = createLogger({ level: (str(p.values['log-level']) ?? 'warn') as 'warn' });
    io.out('==> Starting the Isthmus demo: three regions, each with its server and mesh gateway');
    const started = Date.now();
    const demo = await startDemo({ logger, rate, dataDir: str(p.values['data-dir']), say: (l) => io.out(l) });
    io.out(`==> Ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    for (const d of demo.dcs) io.out(`    ${d.dc}: HTTP API http://${d.http}   gRPC ${d.grpc}   gateway ${d.gateway}`);
    io.out('    services: web (dc1) -> api (dc2) -> db (dc3); web -> db is denied by an intention');
    io.out(`    dashboard: ${demo.dashboardUrl}`);
    io.out(`    try: npx isthmus flows --dc all --http-addr ${demo.dcs[0].http}    npx isthmus federation status --http-addr ${demo.dcs[1].http}`);
    io.out('    Ctrl-C stops everything.');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    io.out('==> Stopping every process of the demo');
    await demo.stop();
    return 0;
  },
};
