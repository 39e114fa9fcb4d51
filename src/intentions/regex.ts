// The regular expressions of L7 permissions (`PathRegex`, a header's `Regex`), in RE2 syntax as
// Consul's (Envoy's `safe_regex`) are, matched in time linear in the input. A pattern is written by
// whoever holds intentions:write and then run by every sidecar against every request path and header
// value a caller sends: JavaScript's backtracking RegExp takes 1.2 s to refuse a 2 KB path with
// `.*.*.*x`, and `(a+)+b` never ends on a long enough run of `a`s. RE2 has no lookarounds or
// backreferences, which is what keeps it linear; a pattern using them is refused when written.
import { RE2JS } from 're2js';

/** Why `pattern` is not an RE2 regular expression, or undefined when it is one. */
export function regexError(pattern: string): string | undefined {
  try {
    RE2JS.compile(pattern);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** A test of whether `pattern` (valid RE2) matches the whole of a string, as Envoy's `safe_regex` does. */
export function fullMatch(pattern: string): (s: string) => boolean {
  const re = RE2JS.compile(pattern);
  return (s) => re.matches(s);
}
