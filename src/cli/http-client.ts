// The CLI's HTTP client: address and token from flags or ISTHMUS_HTTP_ADDR / ISTHMUS_HTTP_TOKEN,
// and every failure turned into one readable line.
import { CliError } from './cli-error.js';

export interface ClientOptions {
  httpAddr?: string;
  token?: string;
  env?: NodeJS.ProcessEnv;
}

export const CLIENT_OPTIONS = {
  'http-addr': { type: 'string' },
  token: { type: 'string' },
} as const;

export class ApiClient {
  readonly base: string;
  private readonly token: string | undefined;

  constructor(opts: ClientOptions) {
    const env = opts.env ?? process.env;
    const addr = opts.httpAddr ?? env.ISTHMUS_HTTP_ADDR ?? '127.0.0.1:8500';
    this.base = (/^https?:\/\//.test(addr) ? addr : `http://${addr}`).replace(/\/+$/, '');
    try {
      new URL(this.base);
    } catch {
      throw new CliError(`--http-addr "${addr}" is not an address (use host:port or http://host:port)`);
    }
    this.token = opts.token ?? env.ISTHMUS_HTTP_TOKEN ?? undefined;
  }

  /** The headers every call sends (the token). */
  headers(): Record<string, string> {
    return this.token ? { 'X-Consul-Token': this.token } : {};
  }

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; headers: Headers }> {
    const headers: Record<string, string> = this.headers();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new CliError(`cannot reach the Isthmus API at ${this.base}: ${cause} (is a server running? set --http-addr or ISTHMUS_HTTP_ADDR)`);
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      // Plain-text answer.
    }
    if (!res.ok) throw new CliError(describeError(res.status, parsed));
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  get<T = unknown>(path: string) {
    return this.request<T>('GET', path).then((r) => r.body);
  }
  put<T = unknown>(path: string, body?: unknown) {
    return this.request<T>('PUT', path, body).then((r) => r.body);
  }
  post<T = unknown>(path: string, body?: unknown) {
    return this.request<T>('POST', path, body).then((r) => r.body);
  }
  delete<T = unknown>(path: string) {
    return this.request<T>('DELETE', path).then((r) => r.body);
  }
}

function describeError(status: number, body: unknown): string {
  if (body && typeof body === 'object' && 'Message' in body) {
    const b = body as { Message: string; Violations?: { Field: string; Message: string }[] };
    const v = b.Violations?.length ? ': ' + b.Violations.map((x) => (x.Field ? `${x.Field}: ${x.Message}` : x.Message)).join('; ') : '';
    return `${b.Message}${v && !b.Message.includes(b.Violations![0].Message) ? v : ''} (HTTP ${status})`;
  }
  return `${typeof body === 'string' && body ? body.trim() : 'request failed'} (HTTP ${status})`;
}

/** The client for a command's parsed flags (--http-addr, --token) and environment. */
export function clientFor(values: Record<string, unknown>, env: NodeJS.ProcessEnv): ApiClient {
  const s = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return new ApiClient({ httpAddr: s(values['http-addr']), token: s(values.token), env });
}
