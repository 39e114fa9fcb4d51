// Polls a condition until it holds, instead of sleeping for a guessed time; the error names what was
// awaited and the last failure seen on the way.

export async function until<T>(
  what: string,
  f: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  ms = 20_000,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
