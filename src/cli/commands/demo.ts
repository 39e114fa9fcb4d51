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
    io.out('    services: web (dc1) -> api (dc2: v1 and v2; dc3: v1) -> db (dc3); web -> db is denied by an intention');
    io.out('    routing: api calls split 90/10 between v1 and v2 (x-canary: 1 always v2), failing over to dc3 when dc2 has none');
    io.out(`    try: npx isthmus maint -enable -service api -http-addr ${demo.dcs[1].http}    (then -disable): api v1 calls move to dc3 and back`);
    io.out(`    dashboard: ${demo.dashboardUrl}`);
    io.out(`    try: npx isthmus flows --dc all --http-addr ${demo.dcs[0].http}    npx isthmus federation status --http-addr ${demo.dcs[1].http}`);
    io.out('    Ctrl-C stops everything.');
    // Every 10 s: where the api calls of those 10 s landed, so a failover is seen as it happens.
    let last = demo.landed();
    let lastTraffic = demo.traffic();
    const report = setInterval(() => {
      const now = demo.landed();
      const traffic = demo.traffic();
      const parts = Object.keys(now)
        .sort()
        .map((k) => `${k} ${now[k] - (last[k] ?? 0)}`);
      const failed = ['web -> api -> db', 'web -> api (canary) -> db'].reduce((sum, k) => sum + (traffic[k]?.refused ?? 0) - (lastTraffic[k]?.refused ?? 0), 0);
      io.out(`    api calls, last 10 s: ${parts.join(', ') || 'none'}; failed ${failed}`);
      last = now;
      lastTraffic = traffic;
    }, 10_000);
    report.unref();
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    clearInterval(report);
    io.out('==> Stopping every process of the demo');
    await demo.stop();
    return 0;
  },
};
