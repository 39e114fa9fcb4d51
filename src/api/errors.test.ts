import { describe, expect, it } from 'vitest';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import { errorBody, failureLogLevel } from './errors.js';

describe('failureLogLevel', () => {
  it('warns of a write refused because the primary is unreachable, and logs other server failures as errors', () => {
    const unreachable = new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, 'primary dc1 cannot be reached');
    expect(errorBody(unreachable).status).toBe(503);
    expect(failureLogLevel(unreachable, 503)).toBe('warn');
    const storeDown = new IsthmusError(ErrorCodes.STORE_UNAVAILABLE, 'redis down');
    expect(failureLogLevel(storeDown, errorBody(storeDown).status)).toBe('error');
    expect(failureLogLevel(new Error('boom'), 500)).toBe('error');
  });

  it('does not log a refusal of the request itself', () => {
    const invalid = new IsthmusError(ErrorCodes.INVALID, 'bad body');
    expect(failureLogLevel(invalid, errorBody(invalid).status)).toBeUndefined();
  });
});
