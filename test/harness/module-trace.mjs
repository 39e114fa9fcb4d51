// `node --import ./module-trace.mjs`: writes the URL of every ES module the process loads, one a
// line, to the file named by MODULE_TRACE_FILE (the hooks run on a thread of their own, so a file).
import { register } from 'node:module';

register('./module-trace-hooks.mjs', import.meta.url);
