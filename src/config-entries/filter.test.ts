// The subset filter language (Consul's bexpr, the subset resolvers use) against instances.
import { describe, expect, it } from 'vitest';
import { checkSubsetFilters, filterProblem, parseFilter, type FilterSubject } from './filter.js';

const inst = (tags: string[], meta: Record<string, string>, id = 'api-1'): FilterSubject => ({
  service: { ID: id, Service: 'api', Tags: tags, Meta: meta, Address: '10.0.0.1', Port: 8080 },
  node: { Node: 'node-1', Meta: { zone: 'a' } },
});

const v1 = inst(['primary', 'canary'], { version: 'v1', 'team-name': 'pay' });
const v2 = inst([], { version: 'v2' }, 'api-2');

const matches = (f: string, s: FilterSubject) => parseFilter(f).matches(s);

describe('parseFilter', () => {
  it.each([
    ['Service.Meta.version == v1', true, false],
    ['Service.Meta.version == "v1"', true, false],
    ['Service.Meta.version == `v1`', true, false],
    ['Service.Meta.version != v1', false, true],
    ['Service.Meta.missing == ""', false, false],
    ['Service.Meta.missing != v1', true, true],
    ['Service.Meta.team-name == pay', true, false],
    ['Service.Tags contains canary', true, false],
    ['Service.Tags not contains canary', false, true],
    ['canary in Service.Tags', true, false],
    ['"canary" not in Service.Tags', false, true],
    ['Service.Tags is empty', false, true],
    ['Service.Tags is not empty', true, false],
    ['version in Service.Meta', true, true],
    ['not Service.Meta.version == v1', false, true],
    ['Service.Meta.version == v1 and Service.Tags contains primary', true, false],
    ['Service.Meta.version == v2 or Service.Tags contains primary', true, true],
    ['not (Service.Meta.version == v1 or Service.Meta.version == v2)', false, false],
    ['(Service.Meta.version == v1 or Service.Meta.version == v2) and not Service.Tags contains canary', false, true],
    ['Service.ID == api-2', false, true],
    ['Node.Meta.zone == a and Service.Port == 8080', true, true],
  ])('%s', (f, forV1, forV2) => {
    expect([matches(f, v1), matches(f, v2)]).toEqual([forV1, forV2]);
  });

  it('binds and tighter than or, as bexpr does', () => {
    // a or (b and c): true for v1 through a alone.
    expect(matches('Service.Meta.version == v1 or Service.Meta.version == v2 and Service.Tags contains nope', v1)).toBe(true);
    expect(matches('Service.Meta.version == v1 or Service.Meta.version == v2 and Service.Tags contains nope', v2)).toBe(false);
  });

  it('reads escapes in double-quoted values', () => {
    expect(matches('Service.Meta.q == "a \\"b\\""', inst([], { q: 'a "b"' }))).toBe(true);
  });

  it.each([
    ['', /is empty/],
    ['Service.Meta.version = v1', /unexpected "=" at position 22/],
    ['Service.Meta.version ==', /ends where a value was expected/],
    ['Service.Nope == x', /unknown selector "Service.Nope"/],
    ['Service.Tags == x', /Service.Tags is a collection/],
    ['(Service.ID == x', /ends where "\)" was expected/],
    ['Service.ID == x)', /unexpected "\)"/],
    ['Service.ID == "x', /unterminated string/],
    ['Service.ID matches "x.*"', /"matches" .* not supported/],
    ['Service.ID == x and', /ends where a selector was expected/],
    ['Service.ID == x y', /unexpected "y"/],
  ])('refuses %j', (f, message) => {
    expect(filterProblem(f)).toMatch(message);
  });

  it('names each bad subset filter of a resolver at Subsets.<name>.Filter', () => {
    let err: { code?: string; violations?: unknown } = {};
    try {
      checkSubsetFilters({
        Kind: 'service-resolver',
        Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'bogus' }, v3: { Filter: 'x ==' } },
      });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.code).toBe('ISTHMUS_ERR_INVALID');
    expect(err.violations).toEqual([
      { Field: 'Subsets.v2.Filter', Message: expect.stringMatching(/not a valid filter expression/) },
      { Field: 'Subsets.v3.Filter', Message: expect.stringMatching(/unknown selector "x"/) },
    ]);
  });
});
