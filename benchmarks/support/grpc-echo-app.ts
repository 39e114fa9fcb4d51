// Benchmark child: the grpc-js echo app of the sidecar's tests; prints its port as JSON.
import { startEchoApp } from '../../src/sidecar/testing/grpc-echo.js';

const app = await startEchoApp();
process.stdout.write(JSON.stringify({ port: app.port, pid: process.pid }) + '\n');
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
