// Soak child: a small upstream application in its own process, answering every request with its
// service and DC as JSON (so a call that reached the wrong place is counted as an error).
// argv: SERVICE DC HOST. Prints { port, pid } as one JSON line once listening on HOST (any free port).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const [service, dc, host] = process.argv.slice(2);
const body = Buffer.from(JSON.stringify({ service, dc }) + '\n');
// Idle keep-alive connections are kept longer than any gap in the soak's load, so a close never races a request.
const srv = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
srv.listen(0, host, () => process.stdout.write(JSON.stringify({ port: (srv.address() as AddressInfo).port, pid: process.pid }) + '\n'));
const stop = () => {
  srv.closeAllConnections();
  srv.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
