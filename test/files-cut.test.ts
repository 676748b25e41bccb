// Files cut short by another program while they are read through a mapping (a `cp` over a model
// file during a load, a prepack cache file emptied under a loaded model): the kernel then raises
// SIGBUS, which ended the process. Now the read sees zeros, and the load or the call fails with
// ERR_MODEL naming the file (native/mapping_guard.h). In child processes, so that a regression
// fails these tests instead of killing the runner.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, inject, it } from 'vitest';

import { runChild } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist', 'esm');
const fixture = join(root, 'test', 'fixtures', 'cut', 'cut-files.mjs');

type Outcome<T> = { value?: T; code?: string; message?: string };

describe('a file cut short under a mapped read', () => {
  const temp: string[] = [];
  const run = <T>(mode: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'fastcomposer-cut-'));
    temp.push(dir);
    return runChild<T>(fixture, [dist, mode, dir, inject('goldenModelDir')], 120_000);
  };
  afterAll(() => {
    for (const dir of temp) rmSync(dir, { recursive: true, force: true });
  });

  it('reads zeros past the cut and says it was cut, instead of dying of SIGBUS', async () => {
    const r = await run<{ cut: boolean; sum: number }>('mapping');
    expect(r.signal, r.stderr).toBeNull();
    // 100000 ones before the cut, zeros after it.
    expect(r.result).toEqual({ cut: true, sum: 100_000 });
  });

  it('a SIGBUS that is not a cut mapping still ends the process', async () => {
    const r = await run<string>('foreign-sigbus');
    expect(r.signal).toBe('SIGBUS');
    expect(r.result).toBeUndefined();
  });

  it('a module file cut before or during its read fails with ERR_MODEL naming it; one left whole loads', async () => {
    const r = await run<Record<string, Outcome<{ cut: boolean }>>>('module');
    expect(r.signal, r.stderr).toBeNull();
    const refused = { code: 'ERR_MODEL', message: expect.stringMatching(/unet\.pt was cut short while it was being read/) };
    expect(r.result?.emptied).toEqual(refused);
    expect(r.result?.['cut-before-read']).toEqual(refused);
    // Cut once its weights point into the mapping: the load's end sees it (Model then refuses).
    expect(r.result?.['cut-after-read']).toEqual({ value: { cut: true } });
    expect(r.result?.whole).toEqual({ value: { cut: false } });
  });

  it("a prepack cache file emptied under a loaded model fails that model's calls with ERR_MODEL", async () => {
    const r = await run<{ fromCache: number; before: number; calls: Outcome<string>[] }>('prepack-cache');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.result?.fromCache).toBeGreaterThan(0);
    expect(r.result?.before).toBe(1);
    const refused = { code: 'ERR_MODEL', message: expect.stringMatching(/prepack cache file .*\.fcpack was cut short/) };
    // Every later call too: the zeros stay.
    expect(r.result?.calls).toEqual([refused, refused]);
  });
});
