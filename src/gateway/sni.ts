// The SNI names of the mesh (DESIGN.md, "Names"): service traffic
// `[<subset>.]<service>.<ns>.<dc>.internal.<trust-domain>` and control-plane traffic between DCs
// `server.<dc>.<trust-domain>`. Builders for the server that hands them out, a parser for gateways.

export interface ServiceSni {
  kind: 'service';
  service: string;
  namespace: string;
  dc: string;
  subset?: string;
  trustDomain: string;
}

export interface ServerSni {
  kind: 'server';
  dc: string;
  trustDomain: string;
}

export interface InvalidSni {
  kind: 'invalid';
  reason: string;
}

export type SniName = ServiceSni | ServerSni;

const LABEL_RE = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})$/;

export function serviceSni(service: string, namespace: string, dc: string, trustDomain: string, subset?: string): string {
  return `${subset ? `${subset}.` : ''}${service}.${namespace}.${dc}.internal.${trustDomain}`;
}

export function serverSni(dc: string, trustDomain: string): string {
  return `server.${dc}.${trustDomain}`;
}

/**
 * Parses an SNI of the mesh in `trustDomain` (the trust domain is a suffix of several labels, so it
 * must be known to split the name without guessing). Names of another trust domain, or of no shape
 * the mesh uses, come back as `invalid` with the reason.
 */
export function parseSni(sni: string, trustDomain: string): SniName | InvalidSni {
  const td = trustDomain.toLowerCase();
  const lower = sni.toLowerCase();
  if (!lower.endsWith(`.${td}`) || lower.length === td.length + 1) {
    return { kind: 'invalid', reason: `SNI ${sni} is not in trust domain ${trustDomain}` };
  }
  const labels = sni.slice(0, sni.length - td.length - 1).split('.');
  if (!labels.every((l) => LABEL_RE.test(l))) return { kind: 'invalid', reason: `SNI ${sni} has an empty or malformed label` };
  const last = labels[labels.length - 1].toLowerCase();
  if (last === 'internal' && labels.length === 4) {
    return { kind: 'service', service: labels[0], namespace: labels[1], dc: labels[2].toLowerCase(), trustDomain };
  }
  if (last === 'internal' && labels.length === 5) {
    return { kind: 'service', subset: labels[0], service: labels[1], namespace: labels[2], dc: labels[3].toLowerCase(), trustDomain };
  }
  if (labels.length === 2 && labels[0].toLowerCase() === 'server') return { kind: 'server', dc: labels[1].toLowerCase(), trustDomain };
  return { kind: 'invalid', reason: `SNI ${sni} is neither <service>.<ns>.<dc>.internal.<trust-domain>, <subset>.<service>.<ns>.<dc>.internal.<trust-domain> nor server.<dc>.<trust-domain>` };
}
