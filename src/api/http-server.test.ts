import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Hono } from 'hono';
import type { ApiEnv } from './env.js';
import { listenHttp, type HttpListener } from './http-server.js';

let listener: HttpListener | undefined;
afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

/** The raw head of one answer, so a duplicated header line would show. */
function rawHead(port: number, method: string, path: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.rawHeaders));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('listenHttp', () => {
  it('puts the static headers once on every answer, whatever the route sends', async () => {
    listener = await listenHttp('127.0.0.1', 0, { 'X-Consul-Default-ACL-Policy': 'deny' });
    const app = new Hono<ApiEnv>();
    app.get('/json', (c) => c.json({ ok: true }));
    app.get('/empty', (c) => c.body(null, 204));
    app.get('/own', (c) => c.text('x', 200, { 'X-Other': 'y' }));
    listener.serve(app);
    for (const [method, path] of [['GET', '/json'], ['HEAD', '/json'], ['GET', '/empty'], ['GET', '/own'], ['GET', '/missing']]) {
      const head = await rawHead(listener.port, method, path);
      expect(head.filter((h) => h.toLowerCase() === 'x-consul-default-acl-policy'), `${method} ${path}`).toHaveLength(1);
      expect(head[head.findIndex((h) => h.toLowerCase() === 'x-consul-default-acl-policy') + 1]).toBe('deny');
    }
    expect((await rawHead(listener.port, 'GET', '/own')).map((h) => h.toLowerCase())).toContain('x-other');
  });

  it('answers 503 until an app is served', async () => {
    listener = await listenHttp('127.0.0.1', 0);
    const res = await fetch(`http://${listener.address}/v1/agent/self`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { Error: string }).Error).toBe('ISTHMUS_ERR_UNAVAILABLE');
  });

  it('refuses a header value that would split the answer', async () => {
    await expect(listenHttp('127.0.0.1', 0, { 'X-Bad': 'a\r\nInjected: 1' })).rejects.toThrow();
  });
});
