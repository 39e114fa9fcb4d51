#!/usr/bin/env node
// package.json's "install" step (so `npm ci` runs it): builds the gateway's byte pump
// (native/pump.c, binding.gyp) with node-gyp against this machine's Node headers (npm's nodedir;
// nothing is downloaded when it is set). A failed build does not fail the install: the gateway
// then moves bytes with its TypeScript pump and says why in one log line. Named in package.json on
// purpose: npm runs a root package's own install scripts on `npm ci`, and for a package with a
// binding.gyp and no install script it would run a bare `node-gyp rebuild`, whose failure fails
// the install.
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const say = (line) => console.log(`byte pump: ${line}`);

if (process.platform !== 'linux') {
  say(`not built on ${process.platform} (epoll and splice are Linux's); the TypeScript pump is used`);
  process.exit(0);
}
// npm points npm_config_node_gyp at the node-gyp it bundles; run outside npm, the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
const r = spawnSync(cmd, [...args, 'rebuild', '--loglevel=warn'], { cwd: root, stdio: 'inherit' });
if (r.status === 0) say('built build/Release/pump.node');
else say(`build failed (${r.error ? r.error.message : `node-gyp exited with ${r.status ?? r.signal}`}); the TypeScript pump is used`);
