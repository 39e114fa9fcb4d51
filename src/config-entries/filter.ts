// The part of Consul's filter expression language (go-bexpr) that a service-resolver's Subsets use to
// pick instances: selectors on the service instance and its node, ==, !=, contains, in, is empty,
// not, and, or and parentheses. Parsed once when an entry is written or a chain compiled, evaluated
// per instance by the server (and by the exporting DC for another DC's subset health).
import { invalid } from '../core/errors.js';

/** What a filter can see of one instance (Consul's ServiceEntry, reduced to the fields used). */
export interface FilterSubject {
  service: { ID: string; Service: string; Tags: string[]; Meta: Record<string, string>; Address?: string; Port?: number };
  node?: { Node: string; Address?: string; Meta?: Record<string, string> };
}

type Selector =
  | { kind: 'scalar'; path: string; read: (s: FilterSubject) => string | undefined }
  | { kind: 'list'; path: string; read: (s: FilterSubject) => string[] }
  | { kind: 'map'; path: string; read: (s: FilterSubject) => Record<string, string> };

export type FilterExpr =
  | { op: 'and' | 'or'; left: FilterExpr; right: FilterExpr }
  | { op: 'not'; expr: FilterExpr }
  | { op: '==' | '!='; selector: Selector; value: string }
  | { op: 'contains' | 'not contains'; selector: Selector; value: string }
  | { op: 'empty' | 'not empty'; selector: Selector };

export interface Filter {
  readonly source: string;
  matches(subject: FilterSubject): boolean;
}

/** Thrown (as ISTHMUS_ERR_INVALID) with the field the caller names; the message says where in the expression. */
export class FilterSyntaxError extends Error {}

const scalar = (path: string, read: (s: FilterSubject) => string | undefined): Selector => ({ kind: 'scalar', path, read });

/** The selectors Consul documents for service health entries that make sense for a subset. */
function selectorOf(path: string): Selector | undefined {
  const meta = /^(Service|Node)\.Meta\.(.+)$/.exec(path);
  if (meta) {
    const key = meta[2];
    return meta[1] === 'Service' ? scalar(path, (s) => s.service.Meta[key]) : scalar(path, (s) => s.node?.Meta?.[key]);
  }
  switch (path) {
    case 'Service.ID':
      return scalar(path, (s) => s.service.ID);
    case 'Service.Service':
      return scalar(path, (s) => s.service.Service);
    case 'Service.Address':
      return scalar(path, (s) => s.service.Address ?? '');
    case 'Service.Port':
      return scalar(path, (s) => (s.service.Port === undefined ? undefined : String(s.service.Port)));
    case 'Node.Node':
      return scalar(path, (s) => s.node?.Node);
    case 'Node.Address':
      return scalar(path, (s) => s.node?.Address);
    case 'Service.Tags':
      return { kind: 'list', path, read: (s) => s.service.Tags };
    case 'Service.Meta':
      return { kind: 'map', path, read: (s) => s.service.Meta };
    case 'Node.Meta':
      return { kind: 'map', path, read: (s) => s.node?.Meta ?? {} };
  }
  return undefined;
}

type Token = { t: 'word' | 'string' | 'op' | '(' | ')'; v: string; at: number };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      out.push({ t: c, v: c, at: i++ });
    } else if (c === '=' || c === '!') {
      if (src[i + 1] !== '=') throw new FilterSyntaxError(`unexpected "${c}" at position ${i + 1} (use == or !=)`);
      out.push({ t: 'op', v: c + '=', at: i });
      i += 2;
    } else if (c === '"' || c === '`') {
      const start = i++;
      let v = '';
      while (i < src.length && src[i] !== c) {
        if (c === '"' && src[i] === '\\' && i + 1 < src.length) {
          const n = src[i + 1];
          v += n === 'n' ? '\n' : n === 't' ? '\t' : n;
          i += 2;
        } else v += src[i++];
      }
      if (i >= src.length) throw new FilterSyntaxError(`unterminated string starting at position ${start + 1}`);
      i++;
      out.push({ t: 'string', v, at: start });
    } else {
      const m = /^[A-Za-z0-9_./:-]+/.exec(src.slice(i));
      if (!m) throw new FilterSyntaxError(`unexpected "${c}" at position ${i + 1}`);
      out.push({ t: 'word', v: m[0], at: i });
      i += m[0].length;
    }
  }
  return out;
}

const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'contains', 'is', 'empty', 'matches']);

class Parser {
  private i = 0;
  constructor(private readonly toks: Token[]) {}

  parse(): FilterExpr {
    if (this.toks.length === 0) throw new FilterSyntaxError('is empty');
    const e = this.or();
    const rest = this.peek();
    if (rest) throw new FilterSyntaxError(`unexpected "${rest.v}" at position ${rest.at + 1}`);
    return e;
  }

  private peek(k = 0): Token | undefined {
    return this.toks[this.i + k];
  }
  private isWord(v: string, k = 0): boolean {
    const t = this.peek(k);
    return t?.t === 'word' && t.v === v;
  }
  private next(what: string): Token {
    const t = this.toks[this.i++];
    if (!t) throw new FilterSyntaxError(`ends where ${what} was expected`);
    return t;
  }

  private or(): FilterExpr {
    let left = this.and();
    while (this.isWord('or')) {
      this.i++;
      left = { op: 'or', left, right: this.and() };
    }
    return left;
  }

  private and(): FilterExpr {
    let left = this.unary();
    while (this.isWord('and')) {
      this.i++;
      left = { op: 'and', left, right: this.unary() };
    }
    return left;
  }

  private unary(): FilterExpr {
    if (this.isWord('not')) {
      this.i++;
      return { op: 'not', expr: this.unary() };
    }
    if (this.peek()?.t === '(') {
      this.i++;
      const e = this.or();
      const close = this.next('")"');
      if (close.t !== ')') throw new FilterSyntaxError(`expected ")" at position ${close.at + 1}, found "${close.v}"`);
      return e;
    }
    return this.match();
  }

  private value(): string {
    const t = this.next('a value');
    if (t.t === 'string' || (t.t === 'word' && !KEYWORDS.has(t.v))) return t.v;
    throw new FilterSyntaxError(`expected a value at position ${t.at + 1}, found "${t.v}"`);
  }

  private selector(): Selector {
    const t = this.next('a selector');
    if (t.t !== 'word' || KEYWORDS.has(t.v)) throw new FilterSyntaxError(`expected a selector at position ${t.at + 1}, found "${t.v}"`);
    const s = selectorOf(t.v);
    if (!s)
      throw new FilterSyntaxError(
        `unknown selector "${t.v}" at position ${t.at + 1} (one of Service.ID, Service.Service, Service.Tags, Service.Meta.<key>, Service.Address, Service.Port, Node.Node, Node.Address, Node.Meta.<key>)`,
      );
    return s;
  }

  private match(): FilterExpr {
    // `<value> in <selector>` and `<value> not in <selector>`.
    const second = this.peek(1);
    if (second?.t === 'word' && (second.v === 'in' || (second.v === 'not' && this.isWord('in', 2)))) {
      const value = this.value();
      const negated = this.isWord('not');
      this.i += negated ? 2 : 1;
      const selector = this.selector();
      return { op: negated ? 'not contains' : 'contains', selector, value };
    }
    const selector = this.selector();
    const op = this.next('an operator (==, !=, contains, in, is empty)');
    if (op.t === 'op') {
      if (selector.kind !== 'scalar') throw new FilterSyntaxError(`${selector.path} is a collection: use contains, in or is empty, not ${op.v}`);
      return { op: op.v as '==' | '!=', selector, value: this.value() };
    }
    if (op.t === 'word' && op.v === 'contains') {
      return { op: 'contains', selector, value: this.value() };
    }
    if (op.t === 'word' && op.v === 'not' && this.isWord('contains')) {
      this.i++;
      return { op: 'not contains', selector, value: this.value() };
    }
    if (op.t === 'word' && op.v === 'is') {
      const negated = this.isWord('not');
      if (negated) this.i++;
      const e = this.next('"empty"');
      if (e.t !== 'word' || e.v !== 'empty') throw new FilterSyntaxError(`expected "empty" at position ${e.at + 1}, found "${e.v}"`);
      return { op: negated ? 'not empty' : 'empty', selector };
    }
    if (op.t === 'word' && op.v === 'matches') throw new FilterSyntaxError(`"matches" (regular expressions) is not supported in subset filters`);
    throw new FilterSyntaxError(`expected an operator (==, !=, contains, in, is empty) at position ${op.at + 1}, found "${op.v}"`);
  }
}

function evaluate(e: FilterExpr, s: FilterSubject): boolean {
  switch (e.op) {
    case 'and':
      return evaluate(e.left, s) && evaluate(e.right, s);
    case 'or':
      return evaluate(e.left, s) || evaluate(e.right, s);
    case 'not':
      return !evaluate(e.expr, s);
    case '==':
    case '!=': {
      const v = (e.selector as Extract<Selector, { kind: 'scalar' }>).read(s);
      // A missing meta key equals nothing (bexpr's behaviour for an absent map key).
      const eq = v !== undefined && v === e.value;
      return e.op === '==' ? eq : !eq;
    }
    case 'contains':
    case 'not contains': {
      const has = containsValue(e.selector, s, e.value);
      return e.op === 'contains' ? has : !has;
    }
    case 'empty':
    case 'not empty': {
      const empty = isEmpty(e.selector, s);
      return e.op === 'empty' ? empty : !empty;
    }
  }
}

function containsValue(sel: Selector, s: FilterSubject, value: string): boolean {
  if (sel.kind === 'list') return sel.read(s).includes(value);
  if (sel.kind === 'map') return Object.prototype.hasOwnProperty.call(sel.read(s), value);
  // On a string, bexpr's `contains` and `in` are substring tests.
  return (sel.read(s) ?? '').includes(value);
}

function isEmpty(sel: Selector, s: FilterSubject): boolean {
  if (sel.kind === 'list') return sel.read(s).length === 0;
  if (sel.kind === 'map') return Object.keys(sel.read(s)).length === 0;
  return !sel.read(s);
}

/** Parses a filter expression, or throws FilterSyntaxError saying what is wrong and where. */
export function parseFilter(source: string): Filter {
  const expr = new Parser(tokenize(source)).parse();
  return { source, matches: (subject) => evaluate(expr, subject) };
}

/** The message of a filter's syntax error, or undefined when it parses. */
export function filterProblem(source: string): string | undefined {
  try {
    parseFilter(source);
    return undefined;
  } catch (err) {
    if (err instanceof FilterSyntaxError) return `not a valid filter expression: ${err.message}`;
    throw err;
  }
}

/** Every Subsets' Filter of a resolver that does not parse, as violations at `Subsets.<name>.Filter`; throws ISTHMUS_ERR_INVALID. */
export function checkSubsetFilters(entry: { Kind: string; Subsets?: Record<string, { Filter?: string }> }): void {
  if (entry.Kind !== 'service-resolver') return;
  const v = Object.entries(entry.Subsets ?? {}).flatMap(([name, s]) => {
    const problem = s.Filter ? filterProblem(s.Filter) : undefined;
    return problem ? [{ Field: `Subsets.${name}.Filter`, Message: problem }] : [];
  });
  if (v.length) throw invalid(v);
}
