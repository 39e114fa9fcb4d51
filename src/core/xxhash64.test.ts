import { describe, expect, it } from 'vitest';
import { xxHash64 } from './xxhash64.js';

describe('xxHash64', () => {
  it('matches the reference implementation on its published vectors', () => {
    // From the xxHash sources and python-xxhash's README (short inputs, a seed).
    expect(xxHash64('').toString(16)).toBe('ef46db3751d8e999');
    expect(xxHash64('a').toString(16)).toBe('d24ec4f1a98c6e5b');
    expect(xxHash64('abc').toString(16)).toBe('44bc2cf5ad770999');
    expect(xxHash64('Nobody inspects the spammish repetition').toString(16)).toBe('fbcea83c8a378bf1');
    expect(xxHash64('xxhash', 20141025n).toString(16)).toBe('b559b98d844e0635');
  });

  it('hashes a string as its UTF-8 bytes, and bytes the same way', () => {
    expect(xxHash64('héllo')).toBe(xxHash64(Buffer.from('héllo', 'utf8')));
    expect(xxHash64(new Uint8Array(Buffer.from('abc')))).toBe(xxHash64('abc'));
  });
});
