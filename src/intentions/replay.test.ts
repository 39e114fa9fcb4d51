import { describe, expect, it } from 'vitest';
import { proposedSet, replay, suggest, type ObservedCall } from './replay.js';
import type { Intention } from './model.js';

const now = new Date().toISOString();
const intention = (src: string, dst: string, action: 'allow' | 'deny', id = `${src}-${dst}`): Intention => ({
  ID: id,
  Description: '',
  SourceNS: 'default',
  SourceName: src,
  DestinationNS: 'default',
  DestinationName: dst,
  SourceType: 'consul',
  Action: action,
  Precedence: src === '*' ? 7 : 9,
  Meta: {},
  CreatedAt: now,
  UpdatedAt: now,
});
const call = (src: string, dst: string, dc = 'dc1', http?: { method: string; path: string }): ObservedCall => ({
  sourceNs: 'default',
  source: src,
  destinationNs: 'default',
  destination: dst,
  dc,
  ...(http ? { http } : {}),
});

describe('replay', () => {
  it('names the calls a new deny would stop, with counts and DCs, and leaves the rest out', () => {
    const current = [intention('*', 'db', 'allow')];
    const after = proposedSet(current, { SourceNS: 'default', SourceName: 'web', DestinationNS: 'default', DestinationName: 'db', Action: 'deny' });
    const r = replay(current, after, [call('web', 'db', 'dc1'), call('web', 'db', 'dc2'), call('api', 'db', 'dc3')], false);
    expect(r.Examined).toBe(3);
    expect(r.Changes).toEqual([
      {
        Source: 'default/web',
        Destination: 'default/db',
        Before: 'allowed',
        After: 'denied',
        BeforeDecidedBy: '*-db',
        AfterDecidedBy: 'proposed',
        Count: 2,
        Datacenters: ['dc1', 'dc2'],
      },
    ]);
  });

  it('replaces the intention of the same pair, and replays HTTP requests against L7 permissions', () => {
    const current = [intention('web', 'api', 'allow')];
    const after = proposedSet(current, {
      SourceNS: 'default',
      SourceName: 'web',
      DestinationNS: 'default',
      DestinationName: 'api',
      Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/public' } }],
    });
    expect(after.filter((i) => i.SourceName === 'web' && i.DestinationName === 'api')).toHaveLength(1);
    const r = replay(
      current,
      after,
      [call('web', 'api'), call('web', 'api', 'dc1', { method: 'GET', path: '/public/x' }), call('web', 'api', 'dc1', { method: 'POST', path: '/admin' })],
      false,
    );
    // The connection stays let in (its requests are judged), /public stays allowed, /admin flips.
    expect(r.Changes.map((c) => [c.Path, c.Before, c.After])).toEqual([['/admin', 'allowed', 'denied']]);
  });
});

describe('suggest', () => {
  it('proposes one intention per source seen, L4 or exactly the paths seen, and marks existing ones', () => {
    const calls = [
      call('web', 'db'),
      call('web', 'db', 'dc2'),
      call('api', 'db', 'dc1', { method: 'GET', path: '/rows' }),
      call('api', 'db', 'dc1', { method: 'POST', path: '/rows' }),
      call('api', 'db', 'dc1', { method: 'GET', path: '/health' }),
      call('web', 'cache'),
    ];
    const s = suggest('default', 'db', calls, [intention('web', 'db', 'allow', 'i-1')]);
    expect(s).toEqual([
      {
        SourceNS: 'default',
        SourceName: 'api',
        DestinationNS: 'default',
        DestinationName: 'db',
        Calls: 3,
        Datacenters: ['dc1'],
        Permissions: [
          { Action: 'allow', HTTP: { PathExact: '/health', Methods: ['GET'] } },
          { Action: 'allow', HTTP: { PathExact: '/rows', Methods: ['GET', 'POST'] } },
        ],
      },
      {
        SourceNS: 'default',
        SourceName: 'web',
        DestinationNS: 'default',
        DestinationName: 'db',
        Calls: 2,
        Datacenters: ['dc1', 'dc2'],
        Existing: 'i-1',
        Action: 'allow',
      },
    ]);
  });
});
