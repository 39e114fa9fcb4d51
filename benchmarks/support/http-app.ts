// Benchmark child: the application behind every path, a keep-alive HTTP server answering 64 bytes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const body = Buffer.alloc(64, 'x');
const srv = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
srv.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: (srv.address() as AddressInfo).port }) + '\n'));
