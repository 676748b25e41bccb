// Fuzzing, bounded in time: random and damaged bytes as subject pictures and as model files
// (truncations, random files, byte flips inside the TorchScript zip's pickles and code). Runs in
// a child process so a native crash fails the test (naming the last input) instead of the runner.
// Seeded: FASTCOMPOSER_FUZZ_SEED reproduces a run, FASTCOMPOSER_FUZZ_MS lengthens it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { runChild } from './helpers/child.js';
import { bundleLibrary } from './helpers/child-lib.js';

const seed = Number(process.env.FASTCOMPOSER_FUZZ_SEED ?? 20240611);
const budgetMs = Number(process.env.FASTCOMPOSER_FUZZ_MS ?? 6000);
const subjectPng = join(import.meta.dirname, 'fixtures', 'tiny-a', 'release', 'subjects', 's0_224x224.png');

interface FuzzResult {
  seed: number;
  counts: { images: number; models: number; modelLoaded: number; modelGenerated: number };
  failures: { label: string; name?: string; message: string }[];
  stillGenerates: boolean;
}

describe(`fuzz (seed ${seed}, ${budgetMs} ms per mode)`, () => {
  let scratch: string;
  let lib: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'fastcomposer-fuzz-'));
    lib = bundleLibrary();
  });
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
    rmSync(lib, { force: true });
  });

  it.each(['images', 'models'] as const)('random %s: every call settles with a FastComposerError, the process survives', async (mode) => {
    const run = await runChild<FuzzResult>(
      join(import.meta.dirname, 'fixtures', 'reliability', 'fuzz.mjs'),
      [lib, inject('goldenModelDir'), scratch, subjectPng, String(seed + (mode === 'models' ? 1 : 0)), String(budgetMs), mode],
      budgetMs + 120_000,
    );
    const crash = `exit ${run.code} signal ${run.signal}; last input ${run.lastCase}; stderr ${run.stderr.slice(-2000)}`;
    expect(run.signal, crash).toBeNull();
    expect(run.code, crash).toBe(0);
    const r = run.result!;
    expect(r.failures).toEqual([]);
    expect(r.stillGenerates).toBe(true);
    expect(r.counts[mode]).toBeGreaterThan(0);
  });
});
