// The settings of each process by their key in a config file, with the flag and the environment
// variable that also set them. Without a dependency: the CLI builds its flag lists from these
// without loading zod or a loader (which `isthmus --help` would otherwise pay for).

export interface Setting {
  flag: string;
  /** A second flag for the same setting; `flag` wins when both are given. */
  alias?: string;
  env?: string;
}

export const REGION_SETTINGS = {
  datacenter: { flag: 'dc', env: 'ISTHMUS_DATACENTER' },
  primary_datacenter: { flag: 'primary-dc', env: 'ISTHMUS_PRIMARY_DATACENTER' },
  node_name: { flag: 'node', env: 'ISTHMUS_NODE_NAME' },
  http_addr: { flag: 'http-addr', env: 'ISTHMUS_LISTEN_HTTP_ADDR' },
  grpc_addr: { flag: 'grpc-addr', env: 'ISTHMUS_GRPC_ADDR' },
  grpc_tls_addr: { flag: 'grpc-tls-addr', env: 'ISTHMUS_GRPC_TLS_ADDR' },
  join_token: { flag: 'join-token', env: 'ISTHMUS_JOIN_TOKEN' },
  federation_heartbeat: { flag: 'federation-heartbeat', env: 'ISTHMUS_FEDERATION_HEARTBEAT' },
  advertise_addr: { flag: 'advertise-addr', env: 'ISTHMUS_ADVERTISE_ADDR' },
  data_dir: { flag: 'data-dir', env: 'ISTHMUS_DATA_DIR' },
  store: { flag: 'store', env: 'ISTHMUS_STORE' },
  redis_url: { flag: 'redis-url', env: 'ISTHMUS_REDIS_URL' },
  acl_default_policy: { flag: 'acl-default-policy', env: 'ISTHMUS_ACL_DEFAULT_POLICY' },
  log_level: { flag: 'log-level', env: 'ISTHMUS_LOG_LEVEL' },
} as const satisfies Record<string, Setting>;

// The gateway and the sidecar read the variables they read before they had a config file.
export const GATEWAY_SETTINGS = {
  datacenter: { flag: 'dc', env: 'ISTHMUS_DATACENTER' },
  addr: { flag: 'addr' },
  wan_addr: { flag: 'wan-addr' },
  server: { flag: 'server', alias: 'grpc-addr', env: 'ISTHMUS_GRPC_ADDR' },
  token: { flag: 'token', env: 'ISTHMUS_HTTP_TOKEN' },
  id: { flag: 'id' },
  name: { flag: 'name' },
  metrics_addr: { flag: 'metrics-addr' },
  max_connections: { flag: 'max-connections' },
  workers: { flag: 'workers' },
  hello_timeout: { flag: 'hello-timeout' },
  idle_timeout: { flag: 'idle-timeout' },
  fast_path: { flag: 'fast-path' },
  pump: { flag: 'pump', env: 'ISTHMUS_PUMP' },
  log_level: { flag: 'log-level' },
} as const satisfies Record<string, Setting>;

export const PROXY_SETTINGS = {
  sidecar_for: { flag: 'sidecar-for' },
  proxy_id: { flag: 'proxy-id' },
  service: { flag: 'service' },
  grpc_addr: { flag: 'grpc-addr', env: 'ISTHMUS_GRPC_ADDR' },
  token: { flag: 'token', env: 'ISTHMUS_HTTP_TOKEN' },
  log_level: { flag: 'log-level' },
} as const satisfies Record<string, Setting>;

type FlagOf<S> = S extends { flag: infer F; alias: infer A } ? F | A : S extends { flag: infer F } ? F : never;
/** The flags of a process's settings as the CLI hands them to its loader. */
export type FlagsOf<T extends Record<string, Setting>> = Partial<Record<FlagOf<T[keyof T]> & string, string>>;

export type ConfigKey = keyof typeof REGION_SETTINGS;
export type ConfigFlags = FlagsOf<typeof REGION_SETTINGS>;
export type GatewayFlags = FlagsOf<typeof GATEWAY_SETTINGS>;
export type ProxyFlags = FlagsOf<typeof PROXY_SETTINGS>;

function flagsOf(settings: Record<string, Setting>): string[] {
  return Object.values(settings).flatMap((s) => (s.alias ? [s.flag, s.alias] : [s.flag]));
}

export const CONFIG_FLAGS = flagsOf(REGION_SETTINGS);
export const GATEWAY_FLAGS = flagsOf(GATEWAY_SETTINGS);
export const PROXY_FLAGS = flagsOf(PROXY_SETTINGS);
