// Benchmark child: the application behind both HTTP/2 pairs, an h2c server (prior knowledge) answering
// 64 bytes to any request, or, to a gRPC-shaped one (content-type application/grpc), one 64-byte
// message in its 5-byte frame with grpc-status 0 in the trailers, once the request's body has ended.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

const body = Buffer.alloc(64, 'x');
const grpcMessage = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
const srv = http2.createServer({ settings: { maxConcurrentStreams: 4096 } });
srv.on('stream', (stream, headers) => {
  stream.on('error', () => {});
  if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) {
    stream.resume();
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': body.length });
    stream.end(body);
    return;
  }
  stream.resume();
  stream.once('end', () => {
    if (stream.destroyed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(grpcMessage);
  });
});
srv.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: (srv.address() as AddressInfo).port, pid: process.pid }) + '\n'));
