// Bad calls and bad model directories: every one rejects with a FastComposerError carrying a
// string `code` and a message naming the argument and value; none takes the process down.
// The matrix runs in a child process (test/fixtures/reliability/matrix.mjs) so that a native
// crash shows up as a failed test, and the child must still generate correctly afterwards.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, FastComposerError } from '../lib/index.js';
import { runChild } from './helpers/child.js';
import { bundleLibrary } from './helpers/child-lib.js';

const subjectPng = join(import.meta.dirname, 'fixtures', 'tiny-a', 'release', 'subjects', 's0_224x224.png');

interface CaseResult {
  name: string;
  rejected: boolean;
  isFastComposerError?: boolean;
  errorName?: string;
  code?: unknown;
  message?: string;
  expectCode: string | null;
  mentions: string[];
}
interface MatrixResult {
  cases: CaseResult[];
  afterEqualsBefore: boolean;
  freshEqualsBefore: boolean;
  latentsFinite: boolean;
  imageVaries: boolean;
  latentsShape: number[];
}

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'fastcomposer-reliability-'));
});
let lib: string | undefined;
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  if (lib) rmSync(lib, { force: true });
});

describe('a matrix of bad calls and files, in a child process', () => {
  let run: Awaited<ReturnType<typeof runChild<MatrixResult>>>;
  beforeAll(async () => {
    lib = bundleLibrary();
    const work = join(scratch, 'matrix');
    mkdirSync(work);
    run = await runChild<MatrixResult>(
      join(import.meta.dirname, 'fixtures', 'reliability', 'matrix.mjs'),
      [lib, inject('goldenModelDir'), work, subjectPng],
      240_000,
    );
  }, 300_000);

  it('the child survives every case and exits cleanly', () => {
    expect({ code: run.code, signal: run.signal, stderr: run.stderr.slice(-4000) }).toEqual({
      code: 0,
      signal: null,
      stderr: expect.any(String),
    });
    expect(run.result).toBeDefined();
  });

  it('runs more than 40 cases', () => {
    expect(run.result!.cases.length).toBeGreaterThan(40);
  });

  it('every case rejects with a FastComposerError with a string code', () => {
    const wrong = run.result!.cases.filter((c) => !c.rejected || !c.isFastComposerError || typeof c.code !== 'string');
    expect(wrong).toEqual([]);
  });

  it('every case has the expected code and a message naming the argument and value', () => {
    const wrong = run
      .result!.cases.filter((c) => (c.expectCode !== null && c.code !== c.expectCode) || !c.mentions.every((m) => c.message!.includes(m)))
      .map((c) => ({ name: c.name, code: c.code, expectCode: c.expectCode, mentions: c.mentions, message: c.message }));
    expect(wrong).toEqual([]);
  });

  it('still generates afterwards, bit for bit as before the matrix and as a fresh instance', () => {
    const r = run.result!;
    expect(r.latentsShape).toEqual([1, 4, 8, 8]);
    expect(r.latentsFinite).toBe(true);
    expect(r.imageVaries).toBe(true);
    expect(r.afterEqualsBefore).toBe(true);
    expect(r.freshEqualsBefore).toBe(true);
  });
});

describe('FastComposer.load() errors', () => {
  let modelDir: string;
  let n = 0;
  /** A copy of the golden model directory with `changes` applied (null deletes a file). */
  function variant(changes: Record<string, Buffer | string | null>): string {
    const dir = join(scratch, `load-${n++}`);
    mkdirSync(dir);
    for (const f of readdirSync(modelDir)) if (!(f in changes)) copyFileSync(join(modelDir, f), join(dir, f));
    for (const [f, c] of Object.entries(changes)) if (c !== null) writeFileSync(join(dir, f), c);
    return dir;
  }
  async function loadError(dir: string): Promise<FastComposerError> {
    const error = await FastComposer.load(dir, { device: 'cpu' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FastComposerError);
    return error as FastComposerError;
  }
  beforeAll(() => {
    modelDir = inject('goldenModelDir');
  });

  it('a missing directory is ERR_MODEL naming the path', async () => {
    const missing = join(scratch, 'does-not-exist');
    const e = await loadError(missing);
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain(missing);
  });

  it('a missing module file is ERR_MODEL naming the module', async () => {
    const e = await loadError(variant({ 'postfuse.pt': null }));
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain('postfuse');
  });

  it('a manifest of version 2 is ERR_MODEL naming the version', async () => {
    const manifest = JSON.parse(readFileSync(join(modelDir, 'model.json'), 'utf8')) as Record<string, unknown>;
    const e = await loadError(variant({ 'model.json': JSON.stringify({ ...manifest, version: 2 }) }));
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toMatch(/version 2\b/);
  });

  it('model.json that is not JSON is ERR_MODEL', async () => {
    const e = await loadError(variant({ 'model.json': '{"format": "fastcomposer-model", ' }));
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain('model.json');
  });

  it('a garbage unet.pt is ERR_MODEL naming the file', async () => {
    const garbage = Buffer.alloc(10_000, 0x5a);
    const e = await loadError(variant({ 'unet.pt': garbage }));
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain('unet.pt');
  });

  it('a truncated unet.pt is ERR_MODEL naming the file', async () => {
    const unet = readFileSync(join(modelDir, 'unet.pt'));
    const e = await loadError(variant({ 'unet.pt': unet.subarray(0, Math.floor(unet.length * 0.7)) }));
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain('unet.pt');
  });

  it('a unet.pt that is another module is ERR_MODEL', async () => {
    const e = await loadError(variant({ 'unet.pt': readFileSync(join(modelDir, 'postfuse.pt')) }));
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain('unet.pt');
  });
});
