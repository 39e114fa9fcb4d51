// Following flows live (`/v1/flows/stream`, what `isthmus flows --follow` and the dashboard read):
// this DC's records are sent as they are stored, not at the next poll of every DC.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import { flowRecord } from '../../src/dataflow/testing/records.js';

let region: Region;

beforeAll(async () => {
  const config = loadRegionConfig({ mode: 'dev', env: {}, flags: { 'http-addr': '127.0.0.1:0', 'grpc-addr': '127.0.0.1:0', 'log-level': 'error' } });
  region = await startRegion(config, { processMetrics: false });
});
afterAll(async () => {
  await region?.stop();
});

/** Reads server-sent events off a response as they arrive. */
function events(res: Response): { next(event: string, timeoutMs: number): Promise<{ id: string; data: string; at: number }> } {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  const queue: { event: string; id: string; data: string; at: number }[] = [];
  return {
    async next(event, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = queue.findIndex((e) => e.event === event);
        if (i >= 0) return queue.splice(i, 1)[0];
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no ${event} event within ${timeoutMs} ms`);
        const chunk = await Promise.race([reader.read(), new Promise<undefined>((r) => setTimeout(() => r(undefined), left))]);
        if (!chunk || chunk.done) continue;
        buffered += decoder.decode(chunk.value, { stream: true });
        let end: number;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const field = (name: string) =>
            block
              .split('\n')
              .find((l) => l.startsWith(`${name}:`))
              ?.slice(name.length + 1)
              .trim() ?? '';
          queue.push({ event: field('event'), id: field('id'), data: field('data'), at: Date.now() });
        }
      }
    },
  };
}

describe('/v1/flows/stream', () => {
  it('sends a record stored here as it comes, well before the next poll of every DC', async () => {
    const abort = new AbortController();
    // Every DC is polled every 10 s (the longest interval there is); the first poll is at once.
    const res = await fetch(`http://${region.httpAddress}/v1/flows/stream?interval=10000`, { signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const stream = events(res);
    try {
      await new Promise((r) => setTimeout(r, 500));
      const stored = Date.now();
      const record = flowRecord({ from: 'web', to: 'api', startTime: stored });
      region.flows.append([record]);
      const got = await stream.next('flow', 5000);
      expect(got.id).toBe(record.id);
      expect(JSON.parse(got.data)).toMatchObject({ id: record.id, source: { service: 'web' }, destination: { service: 'api' } });
      // A second one, too: the stream keeps listening after the first.
      const second = flowRecord({ from: 'batch', to: 'api', startTime: Date.now() });
      region.flows.append([second]);
      expect((await stream.next('flow', 5000)).id).toBe(second.id);
    } finally {
      abort.abort();
    }
  });

  it('sends only what the filter asks for', async () => {
    const abort = new AbortController();
    const res = await fetch(`http://${region.httpAddress}/v1/flows/stream?interval=10000&to=db`, { signal: abort.signal });
    const stream = events(res);
    try {
      await new Promise((r) => setTimeout(r, 300));
      region.flows.append([flowRecord({ from: 'web', to: 'api', startTime: Date.now() })]);
      const wanted = flowRecord({ from: 'web', to: 'db', startTime: Date.now() });
      region.flows.append([wanted]);
      expect((await stream.next('flow', 5000)).id).toBe(wanted.id);
    } finally {
      abort.abort();
    }
  });
});
