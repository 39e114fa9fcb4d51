// The intention model in Consul's shape, its validation (every violation with its field path), and precedence.
import { z } from 'zod';
import { isServiceName, SERVICE_NAME_RULE } from '../core/names.js';
import { regexError } from './regex.js';

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

export interface HeaderMatch {
  Name: string;
  Present?: boolean;
  Exact?: string;
  Prefix?: string;
  Suffix?: string;
  Regex?: string;
  Invert?: boolean;
}

export interface Permission {
  Action: 'allow' | 'deny';
  HTTP?: { PathExact?: string; PathPrefix?: string; PathRegex?: string; Methods?: string[]; Header?: HeaderMatch[] };
}

export interface Intention {
  ID: string;
  Description: string;
  SourceNS: string;
  SourceName: string;
  DestinationNS: string;
  DestinationName: string;
  SourceType: 'consul';
  Action?: 'allow' | 'deny';
  Permissions?: Permission[];
  Precedence: number;
  Meta: Record<string, string>;
  CreatedAt: string;
  UpdatedAt: string;
  CreateIndex?: number;
  ModifyIndex?: number;
  /**
   * The Meta of the service-intentions entry the intention was written through (one per
   * destination, kept on each of its records so that the entry reads back whole). Not part of the
   * intention's own shape: the intentions API leaves it out.
   */
  EntryMeta?: Record<string, string>;
}

export const nameOrWildcard = (what: string) =>
  z.string().refine((v) => v === '*' || isServiceName(v), `${what} must be "*" or a service name (${SERVICE_NAME_RULE})`);

export const nsOrWildcard = (what: string) =>
  z.string().refine((v) => v === '' || v === '*' || isServiceName(v), `${what} must be "*" or a namespace name (${SERVICE_NAME_RULE})`);

/** RE2 syntax, as Consul's: no lookarounds, no backreferences (see regex.ts). */
const regex = z.string().superRefine((v, ctx) => {
  const why = regexError(v);
  if (why !== undefined)
    ctx.addIssue({ code: 'custom', message: `not a valid RE2 regular expression (lookarounds and backreferences are not supported): ${why}` });
});

const headerSchema = z
  .object({
    Name: z.string().min(1, 'is required'),
    Present: z.boolean().optional(),
    Exact: z.string().optional(),
    Prefix: z.string().optional(),
    Suffix: z.string().optional(),
    Regex: regex.optional(),
    Invert: z.boolean().optional(),
  })
  .strict()
  .superRefine((h, ctx) => {
    const set = ['Present', 'Exact', 'Prefix', 'Suffix', 'Regex'].filter((k) => (h as Record<string, unknown>)[k] !== undefined);
    if (set.length !== 1) ctx.addIssue({ code: 'custom', message: 'exactly one of Present, Exact, Prefix, Suffix, Regex must be set' });
  });

export const permissionSchema = z
  .object({
    Action: z.enum(['allow', 'deny'], { message: 'must be allow or deny' }),
    HTTP: z
      .object({
        PathExact: z.string().startsWith('/', 'must start with /').optional(),
        PathPrefix: z.string().startsWith('/', 'must start with /').optional(),
        PathRegex: regex.optional(),
        Methods: z.array(z.string().refine((m) => HTTP_METHODS.includes(m), `must be one of ${HTTP_METHODS.join(', ')}`)).optional(),
        Header: z.array(headerSchema).optional(),
      })
      .strict()
      .superRefine((h, ctx) => {
        const paths = ['PathExact', 'PathPrefix', 'PathRegex'].filter((k) => (h as Record<string, unknown>)[k] !== undefined);
        if (paths.length > 1) ctx.addIssue({ code: 'custom', message: 'at most one of PathExact, PathPrefix, PathRegex' });
      })
      .optional(),
  })
  .strict();

/** An intention's Meta (Consul's limits). */
export const intentionMeta = z
  .record(
    z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'keys must be 1-128 letters, digits, dashes or underscores'),
    z.string().max(512, 'values must be at most 512 characters'),
  )
  .refine((m) => Object.keys(m).length <= 64, 'at most 64 entries');

/** The writable body of an intention (PUT /exact, POST, PUT /:id). */
export const intentionBody = z
  .object({
    SourceNS: nsOrWildcard('SourceNS').optional(),
    SourceName: nameOrWildcard('SourceName').optional(),
    DestinationNS: nsOrWildcard('DestinationNS').optional(),
    DestinationName: nameOrWildcard('DestinationName').optional(),
    SourceType: z.literal('consul', { message: 'must be consul' }).optional(),
    Action: z.enum(['allow', 'deny'], { message: 'must be allow or deny' }).optional(),
    Permissions: z.array(permissionSchema).optional(),
    Description: z.string().max(512, 'at most 512 characters').optional(),
    Meta: intentionMeta.optional(),
    // Read-only fields a client may echo back; ignored.
    ID: z.string().optional(),
    Precedence: z.number().optional(),
    CreateIndex: z.number().optional(),
    ModifyIndex: z.number().optional(),
    CreatedAt: z.string().optional(),
    UpdatedAt: z.string().optional(),
  })
  .strict();

export type IntentionBody = z.infer<typeof intentionBody>;

/** Consul's precedence: exact beats wildcard, destination before source; 9 highest. */
export function precedence(i: { SourceNS: string; SourceName: string; DestinationNS: string; DestinationName: string }): number {
  const score = (ns: string, name: string) => (name !== '*' ? 2 : ns !== '*' ? 1 : 0);
  return score(i.DestinationNS, i.DestinationName) * 3 + score(i.SourceNS, i.SourceName) + 1;
}

/** "ns/name" or "name" -> {ns, name}. */
export function splitName(value: string): { ns: string; name: string } {
  const i = value.indexOf('/');
  return i < 0 ? { ns: 'default', name: value } : { ns: value.slice(0, i), name: value.slice(i + 1) };
}

export function intentionKey(srcNS: string, src: string, dstNS: string, dst: string): string {
  return `${srcNS}/${src}=>${dstNS}/${dst}`;
}
