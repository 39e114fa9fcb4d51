export { Intentions } from './intentions.js';
export type { IntentionsOptions, AuthorizeResult } from './intentions.js';
export { compileIntentions } from './matcher.js';
export type { CompiledIntentions, Decision, HttpRequestInfo } from './matcher.js';
export { intentionBody, precedence, splitName } from './model.js';
export type { Intention, IntentionBody, Permission, HeaderMatch } from './model.js';
export { proposedSet, replay, suggest } from './replay.js';
export type { ObservedCall, ReplayChange, ReplayResult, Suggestion } from './replay.js';
