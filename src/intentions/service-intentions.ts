// Consul's `service-intentions` config entry: the intentions of one destination written as one
// document. It is a second view of the intentions table, not a store of its own: an entry written
// becomes (replaces) that destination's intentions, and an entry read is built from them.
import { z } from 'zod';
import { intentionMeta, nameOrWildcard, nsOrWildcard, permissionSchema, precedence, type Intention } from './model.js';

/** Enterprise partitions and cluster peering do not exist here: only their empty or default value. */
const defaultOnly = z.string().refine((v) => v === '' || v === 'default', 'only "default" is supported');
const notSupported = (what: string) => z.string().refine((v) => v === '', `${what} is not supported`);

const sourceSchema = z.strictObject({
  Name: nameOrWildcard('Name'),
  Namespace: nsOrWildcard('Namespace').optional(),
  Partition: defaultOnly.optional(),
  Peer: notSupported('cluster peering').optional(),
  SamenessGroup: notSupported('a sameness group').optional(),
  Action: z.enum(['allow', 'deny'], { message: 'must be allow or deny' }).optional(),
  Permissions: z.array(permissionSchema).optional(),
  Type: z.literal('consul', { message: 'must be consul' }).optional(),
  Description: z.string().max(512, 'at most 512 characters').optional(),
  // The intention's own Meta, as Consul shows an intention written through the intentions API.
  LegacyMeta: intentionMeta.optional(),
  // Read-only fields an entry read back carries; taken and ignored so that it can be written back.
  Precedence: z.number().optional(),
  LegacyID: z.string().optional(),
  LegacyCreateTime: z.string().optional(),
  LegacyUpdateTime: z.string().optional(),
});

export const serviceIntentionsSchema = z
  .strictObject({
    Kind: z.literal('service-intentions'),
    // The destination; "*" is every service (L4 only, as in Consul).
    Name: nameOrWildcard('Name'),
    Namespace: defaultOnly.optional(),
    Partition: defaultOnly.optional(),
    Meta: z.record(z.string(), z.string()).optional(),
    Sources: z.array(sourceSchema).min(1, 'at least one source is required (to remove every intention of the destination, delete the entry)'),
    CreateIndex: z.number().optional(),
    ModifyIndex: z.number().optional(),
  })
  .superRefine((e, ctx) => {
    const add = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const seen = new Map<string, number>();
    e.Sources.forEach((s, i) => {
      const hasPerms = (s.Permissions?.length ?? 0) > 0;
      if (s.Action && hasPerms) add(['Sources', i, 'Action'], 'a source has either Action or Permissions, not both');
      if (!s.Action && !hasPerms) add(['Sources', i, 'Action'], 'is required (allow or deny) unless Permissions are given');
      if (hasPerms && e.Name === '*') add(['Sources', i, 'Permissions'], 'L7 permissions are not allowed on a wildcard destination (Name "*")');
      const ns = s.Namespace || 'default';
      if (ns === '*' && s.Name !== '*') add(['Sources', i, 'Name'], 'must be "*" when Namespace is "*"');
      const key = `${ns}/${s.Name}`;
      const first = seen.get(key);
      if (first !== undefined) add(['Sources', i, 'Name'], `lists source ${key} again (Sources[${first}] has it)`);
      else seen.set(key, i);
    });
  });

export type ServiceIntentions = z.output<typeof serviceIntentionsSchema>;
export type ServiceIntentionsSource = ServiceIntentions['Sources'][number];
/** An entry as answered: Consul's indexes (the lowest CreateIndex and highest ModifyIndex of its intentions). */
export type StoredServiceIntentions = ServiceIntentions & { CreateIndex: number; ModifyIndex: number };

/** The entry for `name` built from that destination's intentions (undefined when it has none). */
export function entryFromIntentions(name: string, intentions: Intention[]): StoredServiceIntentions | undefined {
  const mine = intentions.filter((i) => i.DestinationNS === 'default' && i.DestinationName === name);
  if (mine.length === 0) return undefined;
  // Consul lists the sources in evaluation order.
  mine.sort((a, b) => b.Precedence - a.Precedence || (a.SourceNS + '/' + a.SourceName < b.SourceNS + '/' + b.SourceName ? -1 : 1));
  const meta = mine.find((i) => i.EntryMeta && Object.keys(i.EntryMeta).length > 0)?.EntryMeta;
  return {
    Kind: 'service-intentions',
    Name: name,
    ...(meta ? { Meta: meta } : {}),
    Sources: mine.map((i) => ({
      Name: i.SourceName,
      ...(i.SourceNS !== 'default' ? { Namespace: i.SourceNS } : {}),
      ...(i.Permissions?.length ? { Permissions: i.Permissions } : { Action: i.Action }),
      Precedence: i.Precedence,
      Type: 'consul' as const,
      ...(i.Description ? { Description: i.Description } : {}),
      LegacyID: i.ID,
      ...(Object.keys(i.Meta ?? {}).length ? { LegacyMeta: i.Meta } : {}),
      LegacyCreateTime: i.CreatedAt,
      LegacyUpdateTime: i.UpdatedAt,
    })),
    CreateIndex: Math.min(...mine.map((i) => i.CreateIndex ?? 0)),
    ModifyIndex: Math.max(...mine.map((i) => i.ModifyIndex ?? 0)),
  };
}

/** The intention fields a source gives (the rest comes from the record it replaces, if any). */
export function sourceFields(destination: string, s: ServiceIntentionsSource) {
  const base = { SourceNS: s.Namespace || 'default', SourceName: s.Name, DestinationNS: 'default', DestinationName: destination };
  const hasPerms = (s.Permissions?.length ?? 0) > 0;
  return {
    base,
    precedence: precedence(base),
    rule: hasPerms ? { Permissions: s.Permissions } : { Action: s.Action },
    description: s.Description ?? '',
    meta: s.LegacyMeta ?? {},
  };
}
