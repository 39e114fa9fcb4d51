import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runStoreSuite } from '../store.case.test.js';
import { MemoryStore } from './memory-store.js';

runStoreSuite('memory', {
  async make(opts) {
    const s = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', retainChanges: opts?.retainChanges });
    await s.start();
    return { a: s, b: s, cleanup: () => s.stop() };
  },
});

const dir = () => mkdtempSync(join(tmpdir(), 'isthmus-store-'));

describe('MemoryStore persistence', () => {
  it('replays the log and the snapshot after a restart, before and after compaction', async () => {
    const d = dir();
    const s = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', dataDir: d, compactEvery: 4 });
    await s.start();
    for (let i = 0; i < 10; i++) await s.commit([{ op: 'put', table: 't', key: `k${i}`, value: { i } }]);
    await s.commit([{ op: 'delete', table: 't', key: 'k3' }]);
    await new Promise((r) => setTimeout(r, 10));
    const index = s.index();
    await s.stop();
    const again = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', dataDir: d });
    await again.start();
    expect(again.index()).toBe(index);
    expect(again.list('t').map((e) => e.key)).toEqual(['k0', 'k1', 'k2', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9']);
    expect(again.get('t', 'k9')).toMatchObject({ value: { i: 9 }, modifyIndex: index - 1 });
    await again.stop();
  });

  it('ignores a torn last line (a write that was never acknowledged)', async () => {
    const d = dir();
    const s = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', dataDir: d });
    await s.start();
    await s.commit([{ op: 'put', table: 't', key: 'a', value: 1 }]);
    await s.stop();
    appendFileSync(join(d, 'changes.log'), '{"i":2,"c":[{"t":"t","k":"b","o":"pu');
    const again = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', dataDir: d });
    await again.start();
    expect(again.list('t').map((e) => e.key)).toEqual(['a']);
    await again.commit([{ op: 'put', table: 't', key: 'c', value: 3 }]);
    await again.stop();
    const third = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', dataDir: d });
    await third.start();
    expect(third.list('t').map((e) => e.key)).toEqual(['a', 'c']);
    await third.stop();
  });

  it('keeps every acknowledged write when the process is killed with SIGKILL', async () => {
    const d = dir();
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./testing/writer.ts', import.meta.url)), d], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const acked: number[] = [];
    let buf = '';
    child.stdout.on('data', (x) => {
      buf += x;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) if (l) acked.push(Number(l));
    });
    while (acked.length < 300) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const s = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x', dataDir: d });
    await s.start();
    const missing = acked.filter((i) => !s.get('w', `k${i}`));
    expect(missing).toEqual([]);
    expect(s.index()).toBeGreaterThanOrEqual(acked.length);
    await s.stop();
  });
});
