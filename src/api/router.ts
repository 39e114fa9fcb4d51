// The API's router: hono's TrieRouter, with the match for each route path without parameters kept
// per method, so the hot fixed endpoints (/v1/agent/connect/authorize) skip the trie walk.
import type { Result, Router } from 'hono/router';
import { TrieRouter } from 'hono/router/trie-router';

/**
 * RegExpRouter would be faster still, but refuses this API's route set (`/v1/acl/token/self` beside
 * `/v1/acl/token/:accessor`). A kept match is exactly what the trie answered for that method and
 * path, and every add() drops them. Only paths registered without `:` or `*` are kept, and Node's
 * HTTP parser knows a fixed list of methods, so the table stays bounded whatever clients send.
 */
export class StaticPathRouter<T> implements Router<T> {
  readonly name = 'StaticPathRouter';
  readonly #trie = new TrieRouter<T>();
  readonly #staticPaths = new Set<string>();
  readonly #matches = new Map<string, Map<string, Result<T>>>();

  add(method: string, path: string, handler: T): void {
    this.#trie.add(method, path, handler);
    if (!path.includes(':') && !path.includes('*')) this.#staticPaths.add(path);
    this.#matches.clear();
  }

  match(method: string, path: string): Result<T> {
    if (!this.#staticPaths.has(path)) return this.#trie.match(method, path);
    let byPath = this.#matches.get(method);
    if (!byPath) this.#matches.set(method, (byPath = new Map()));
    let result = byPath.get(path);
    if (!result) byPath.set(path, (result = this.#trie.match(method, path)));
    return result;
  }
}
