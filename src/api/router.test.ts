import { describe, expect, it } from 'vitest';
import { TrieRouter } from 'hono/router/trie-router';
import { StaticPathRouter } from './router.js';

const ROUTES: [string, string][] = [
  ['ALL', '*'],
  ['GET', '/v1/acl/token/self'],
  ['GET', '/v1/acl/token/:accessor'],
  ['PUT', '/v1/acl/token/:accessor'],
  ['GET', '/v1/connect/intentions/:id'],
  ['GET', '/v1/connect/intentions/exact'],
  ['POST', '/v1/agent/connect/authorize'],
  ['ALL', '/v1/acl/*'],
];
const PATHS = [
  '/v1/acl/token/self',
  '/v1/acl/token/abc',
  '/v1/connect/intentions/exact',
  '/v1/connect/intentions/x',
  '/v1/agent/connect/authorize',
  '/v1/agent/connect/authorize/',
  '/nope',
];

function both(): [StaticPathRouter<string>, TrieRouter<string>] {
  const fast = new StaticPathRouter<string>();
  const trie = new TrieRouter<string>();
  for (const [i, [method, path]] of ROUTES.entries()) {
    fast.add(method, path, `${i}`);
    trie.add(method, path, `${i}`);
  }
  return [fast, trie];
}

describe('StaticPathRouter', () => {
  it('answers exactly what the trie answers, handlers, order and parameters, on every call', () => {
    const [fast, trie] = both();
    for (let round = 0; round < 2; round++) {
      for (const method of ['GET', 'PUT', 'POST', 'DELETE']) {
        for (const path of PATHS) expect(fast.match(method, path)).toEqual(trie.match(method, path));
      }
    }
  });

  it('forgets kept matches when a route is added', () => {
    const [fast] = both();
    expect(fast.match('POST', '/v1/agent/connect/authorize')[0].map(([h]) => h)).toEqual(['0', '6']);
    fast.add('POST', '/v1/agent/connect/authorize', 'late');
    expect(fast.match('POST', '/v1/agent/connect/authorize')[0].map(([h]) => h)).toEqual(['0', '6', 'late']);
  });
});
