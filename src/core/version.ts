// The version shown by the CLI and the API, from package.json (the same path from src/ and dist/).
import { createRequire } from 'node:module';

const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
export const VERSION: string = pkg.version;
