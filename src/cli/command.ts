// The shape of a CLI command: its words, its flags, its usage line, and what it does.
import type { OptionSpec, Parsed } from './args.js';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  /** The words that name it: "intention create". */
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec;
  /** Returns the exit code. */
  run(args: Parsed, io: Io): Promise<number>;
}
