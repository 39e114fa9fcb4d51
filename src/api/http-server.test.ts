import { request } from 'node:http';
import net from 'node:net';
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
    for (const [method, path] of [
      ['GET', '/json'],
      ['HEAD', '/json'],
      ['GET', '/empty'],
      ['GET', '/own'],
      ['GET', '/missing'],
    ]) {
      const head = await rawHead(listener.port, method, path);
      expect(
        head.filter((h) => h.toLowerCase() === 'x-consul-default-acl-policy'),
        `${method} ${path}`,
      ).toHaveLength(1);
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

  it('answers what the HTTP parser refuses with a JSON error, then closes', async () => {
    listener = await listenHttp('127.0.0.1', 0);
    const app = new Hono<ApiEnv>();
    app.get('/ok', (c) => c.json({ ok: true }));
    listener.serve(app);
    const big = await rawExchange(listener.port, `GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100 << 10)}\r\n\r\n`);
    expect(big).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(big.split('\r\n\r\n')[1])).toMatchObject({ Error: 'ISTHMUS_ERR_PAYLOAD_TOO_LARGE' });
    const garbage = await rawExchange(listener.port, 'HELLO THERE\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(garbage.split('\r\n\r\n')[1])).toMatchObject({ Error: 'ISTHMUS_ERR_INVALID' });
  });

  it('cuts a client whose request head does not arrive within 10 s, with 408', async () => {
    listener = await listenHttp('127.0.0.1', 0);
    listener.serve(new Hono<ApiEnv>());
    const started = Date.now();
    const sock = net.connect(listener.port, '127.0.0.1');
    let answer = '';
    sock.on('data', (d) => (answer += d));
    const dribble = setInterval(() => sock.writable && sock.write('X'), 200);
    sock.write('GET /ok HTTP/1.1\r\nX-Slow: ');
    await new Promise((r) => sock.once('close', r));
    clearInterval(dribble);
    const took = Date.now() - started;
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('ISTHMUS_ERR_REQUEST_TIMEOUT');
    expect(took).toBeGreaterThan(9_000);
    expect(took).toBeLessThan(13_000);
  }, 20_000);
});

/** Sends `raw` and returns everything the server sent until it closed. */
function rawExchange(port: number, raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(raw));
    let answer = '';
    sock.on('data', (d) => (answer += d));
    sock.on('error', (err) => (answer ? resolve(answer) : reject(err)));
    sock.on('close', () => resolve(answer));
  });
}
