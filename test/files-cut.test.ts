// Files cut short or written again in place by another program while they are read through a
// mapping (a `cp` over a model file during a load, a prepack cache file emptied under a loaded
// model). A read that met the cut raised SIGBUS, which ended the process; one that missed it
// could mix two versions of the file. Now the read sees zeros, the file is checked before its
// bytes are trusted, and the load or the call fails with ERR_MODEL naming the file
// (native/mapping_guard.h, native/mapped_load.h). In child processes, so that a regression fails
// these tests instead of killing the runner.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, inject, it } from 'vitest';

import { runChild } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist', 'esm');
const fixture = join(root, 'test', 'fixtures', 'cut', 'cut-files.mjs');

type Outcome<T> = { value?: T; code?: string; message?: string };
const changed = (file: RegExp) => ({ code: 'ERR_MODEL', message: expect.stringMatching(file) });

describe('a file changed under a mapped read', () => {
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

  it('a SIGBUS sent to the process, or a fault in a mapping no guard covers, still ends it', async () => {
    for (const mode of ['foreign-sigbus', 'unguarded-fault']) {
      const r = await run<unknown>(mode);
      expect(r.signal, mode).toBe('SIGBUS');
      expect(r.result, mode).toBeUndefined();
    }
  });

  it('a SIGBUS listener added before the guard still hears a sent SIGBUS', async () => {
    const r = await run<unknown>('js-listener');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.result).toEqual({ heard: true, guarded: { cut: true, sum: 100_000 } });
  });

  it('a module file cut before its read fails with ERR_MODEL naming it; one left whole loads', async () => {
    const r = await run<Record<string, Outcome<undefined>>>('module');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.result?.emptied).toEqual(changed(/unet\.pt changed while it was being read/));
    expect(r.result?.cut).toEqual(changed(/unet\.pt changed while it was being read/));
    expect(r.result?.whole).toEqual({});
  });

  it.each(['model-cut', 'model-rewrite'])(
    '%s: a module file changed after load() read it fails the load with ERR_MODEL, caches nothing of it, and loads once whole',
    async (mode) => {
      const r = await run<{ load: Outcome<unknown>; cached: string[]; images: number }>(mode);
      expect(r.signal, r.stderr).toBeNull();
      expect(r.result?.load).toEqual(changed(/unet\.pt changed while it was being read/));
      // The other modules' packed weights were saved; none of the changed file's.
      expect(r.result?.cached).toContain('text_encoder');
      expect(r.result?.cached).not.toContain('unet');
      expect(r.result?.images).toBe(1);
    },
  );

  it("a prepack cache file emptied under a loaded model fails that model's calls with ERR_MODEL", async () => {
    const r = await run<{ fromCache: number; before: number; calls: Outcome<number>[] }>('prepack-cache');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.result?.fromCache).toBeGreaterThan(0);
    expect(r.result?.before).toBe(1);
    const refused = changed(/prepack cache file .*\.fcpack changed while this model read weights from it/);
    // Every later call too: the zeros stay.
    expect(r.result?.calls).toEqual([refused, refused]);
  });
});
