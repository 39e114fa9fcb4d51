// The two servers the API benchmark compares, in one child process: a full Isthmus region (dev mode)
// and a bare hono handler for the same route. Prints their addresses as one JSON line.
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { bareAuthorizeApp, startAuthorizeRegion } from './authorize-region.js';

const { region } = await startAuthorizeRegion();
const bare = bareAuthorizeApp();
const server = serve({ fetch: bare.fetch, hostname: '127.0.0.1', port: 0 }, (info: AddressInfo) => {
  process.stdout.write(JSON.stringify({ isthmus: region.httpAddress, bare: `127.0.0.1:${info.port}`, trustDomain: region.trustDomain }) + '\n');
});
process.on('SIGTERM', async () => {
  server.close();
  await region.stop();
  process.exit(0);
});
