// Whether this Node can give each gateway worker a listening socket of its own on one port
// (SO_REUSEPORT through server.listen({ reusePort })), the kernel spreading new connections over
// them, rather than every worker accepting from the cluster's one shared socket (see balance.ts).

/**
 * True on Node 22.12 and later (23.0 lacks it; 23.1 added the option) on Linux, where the kernel
 * hashes each new connection to one of the sockets bound so. Told by the version: an older Node
 * ignores the unknown option and binds an exclusive socket, and the second worker fails EADDRINUSE.
 * Other systems that have SO_REUSEPORT (macOS) do not spread connections over the sockets.
 */
export function reusePortAvailable(version: string = process.versions.node, platform: NodeJS.Platform = process.platform): boolean {
  if (platform !== 'linux') return false;
  const m = /^v?(\d+)\.(\d+)\./.exec(version);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}
