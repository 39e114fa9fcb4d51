// The isthmus command: find the subcommand, parse its flags, run it, print one clear line on error.
// Command modules import only the CLI's own files at the top; what a command starts (a server, a
// gateway, a sidecar, and their config loaders) it imports when it runs, so help costs nothing.
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { parse } from './args.js';
import { CliError } from './cli-error.js';
import type { Command, Io } from './command.js';
import { devCommand, serverCommand } from './commands/agent.js';
import { aclBootstrap, aclPolicyCreate, aclPolicyList, aclTokenCreate, aclTokenList } from './commands/acl.js';
import { intentionCheck, intentionCreate, intentionDelete, intentionGet, intentionList, intentionMatch, intentionSuggest } from './commands/intention.js';
import { configDelete, configList, configRead, configWrite } from './commands/config.js';
import { connectProxy } from './commands/connect.js';
import { gatewayCommand } from './commands/gateway.js';
import { federationRemove, federationStatus, federationToken } from './commands/federation.js';
import { demoCommand } from './commands/demo.js';
import { caRotate, caRoots, flowsCommand, flowsTrace } from './commands/ca-flows.js';
import { maintCommand } from './commands/maint.js';
import { catalogDatacenters, catalogServices, servicesDeregister, servicesRegister } from './commands/services.js';

export const COMMANDS: Command[] = [
  devCommand,
  serverCommand,
  demoCommand,
  servicesRegister,
  servicesDeregister,
  catalogServices,
  catalogDatacenters,
  maintCommand,
  intentionCreate,
  intentionGet,
  intentionDelete,
  intentionList,
  intentionCheck,
  intentionMatch,
  intentionSuggest,
  configWrite,
  configRead,
  configList,
  configDelete,
  aclBootstrap,
  aclPolicyCreate,
  aclPolicyList,
  aclTokenCreate,
  aclTokenList,
  connectProxy,
  gatewayCommand,
  caRoots,
  caRotate,
  flowsCommand,
  flowsTrace,
  federationToken,
  federationStatus,
  federationRemove,
];

export function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `Usage: isthmus <command> [flags]     (isthmus ${VERSION})`,
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Client commands take --http-addr (ISTHMUS_HTTP_ADDR, default 127.0.0.1:8500) and --token (ISTHMUS_HTTP_TOKEN).',
    'Run `isthmus <command> --help` for its flags.',
  ].join('\n');
}

function findCommand(argv: string[]): { command?: Command; rest: string[]; words: string[] } {
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  for (let n = Math.min(words.length, 3); n > 0; n--) {
    const name = words.slice(0, n).join(' ');
    const command = COMMANDS.find((c) => c.name === name);
    if (command) return { command, rest: argv.slice(n), words };
  }
  return { rest: argv, words };
}

export async function main(argv: string[], io: Io): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(helpText());
    return argv.length === 0 ? 1 : 0;
  }
  if (argv[0] === '--version' || argv[0] === 'version') {
    io.out(`isthmus ${VERSION}`);
    return 0;
  }
  const { command, rest, words } = findCommand(argv);
  if (!command) {
    const prefix = words.join(' ');
    const near = COMMANDS.filter((c) => c.name.startsWith(words[0] ?? '\u0000')).map((c) => c.name);
    io.err(`Error: unknown command "${prefix}"${near.length ? `; did you mean: ${near.join(', ')}` : ''}. Run isthmus --help.`);
    return 1;
  }
  if (rest.includes('--help') || rest.includes('-h') || rest.includes('-help')) {
    io.out(
      `${command.summary}\n\nUsage: ${command.usage}\n\nFlags: ${Object.keys(command.options)
        .map((o) => `--${o}`)
        .join(' ')}`,
    );
    return 0;
  }
  try {
    const parsed = parse(rest, command.options, command.usage);
    return await command.run(parsed, io);
  } catch (err) {
    io.err(`Error: ${describe(err)}`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}

function describe(err: unknown): string {
  if (err instanceof CliError) return err.message;
  if (err instanceof IsthmusError) {
    if (err.code === ErrorCodes.BAD_CONFIG || err.code === ErrorCodes.INVALID) return err.message;
    return `${err.message} (${err.code})`;
  }
  return (err as Error)?.message ?? String(err);
}
