export { ErrorCodes, IsthmusError, invalid, notFound, conflict, permissionDenied, isIsthmusError } from './errors.js';
export type { ErrorCode, Violation } from './errors.js';
export { ComponentGroup } from './lifecycle.js';
export type { Component } from './lifecycle.js';
export { parseDuration, formatDuration } from './duration.js';
export { Backoff, sleep } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { VERSION } from './version.js';
