// Types for js-hcl-parser (hashicorp/hcl v1, the parser `consul config write` uses, built for JavaScript).
declare module 'js-hcl-parser' {
  /** The document as indented JSON, or, when it does not parse, a line that starts "unable to parse JSON: At L:C: ...". */
  export function parse(input: string): string;
  export function stringify(json: string): string;
}
