// model.json records each file's size and SHA-256 (written by the exporter). Sizes are checked at
// every load, digests on request (verifyHashes) and by verify() / `fastcomposer info --verify`,
// before libtorch reads a file; a directory exported before they were recorded still loads, with
// a warning. Hashing reads in chunks and leaves the event loop running.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, FastComposerError } from '../lib/index.js';
import { sha256File } from '../lib/model-files.js';
import { type Crafted, craftModules, modelCopy, sha256 } from './helpers/security.js';

const cli = join(import.meta.dirname, '..', 'dist', 'esm', 'cli', 'main.js');

let scratch: string;
let golden: string;
let crafted: Crafted;
let n = 0;
beforeAll(() => {
  golden = inject('goldenModelDir');
  scratch = mkdtempSync(join(tmpdir(), 'fastcomposer-files-'));
  crafted = craftModules(golden, join(scratch, 'crafted'));
}, 600_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function copy(replace: Record<string, Buffer>, record = false): string {
  return modelCopy(golden, join(scratch, `model-${n++}`), replace, record);
}

function withManifest(edit: (manifest: Record<string, unknown>) => void): string {
  const manifest = JSON.parse(readFileSync(join(golden, 'model.json'), 'utf8')) as Record<string, unknown>;
  edit(manifest);
  return copy({ 'model.json': Buffer.from(JSON.stringify(manifest)) });
}

async function loadError(dir: string, options = {}): Promise<FastComposerError> {
  const error = await FastComposer.load(dir, { device: 'cpu', ...options }).then(
    async (fc) => {
      await fc.dispose();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FastComposerError);
  return error as FastComposerError;
}

function infoVerify(dir: string) {
  return spawnSync(process.execPath, [cli, 'info', '--verify', '--model', dir], { encoding: 'utf8', timeout: 300_000 });
}

describe('a module swapped for another valid one of the same size', () => {
  let dir: string;
  beforeAll(() => {
    const swapped = readFileSync(crafted.swapped);
    expect(swapped.length).toBe(readFileSync(join(golden, 'text_encoder.pt')).length);
    dir = copy({ 'text_encoder.pt': swapped });
  });

  it('is refused with verifyHashes, naming the file and both digests', async () => {
    const e = await loadError(dir, { verifyHashes: true });
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain(join(dir, 'text_encoder.pt'));
    expect(e.message).toContain(sha256(readFileSync(crafted.swapped)));
    expect(e.message).toContain(sha256(readFileSync(join(golden, 'text_encoder.pt'))));
  });

  it('`generate --verify-hashes` stops before loading, with the error and its code on stderr', () => {
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'generate',
        '--verify-hashes',
        '--model',
        dir,
        '--prompt',
        'a park',
        '--device',
        'cpu',
        '--out',
        join(scratch, 'never.png'),
        '--no-progress',
      ],
      { encoding: 'utf8', timeout: 300_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(dir, 'text_encoder.pt')} has SHA-256`);
    expect(r.stderr).toContain('[ERR_MODEL]');
  });

  it('loads without verifyHashes (sizes only, by default)', async () => {
    const fc = await FastComposer.load(dir, { device: 'cpu' });
    await fc.dispose();
  });

  it('verify() and `info --verify` report it, with exit code 1', async () => {
    const v = await FastComposer.verify(dir);
    expect(v.ok).toBe(false);
    expect(v.files.filter((f) => f.status !== 'ok').map((f) => [f.file, f.status])).toEqual([['text_encoder.pt', 'hash-mismatch']]);
    const r = infoVerify(dir);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toContain('MISMATCH    text_encoder.pt: sha256');
    expect(r.stdout).toContain('result         FAILED');
  });
});

describe('sizes, always checked', () => {
  it('a file of another size is ERR_MODEL naming it, before libtorch reads anything', async () => {
    const config = readFileSync(join(golden, 'scheduler_config.json'));
    const dir = copy({ 'scheduler_config.json': Buffer.concat([config, Buffer.from(' ')]) });
    const e = await loadError(dir);
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain(
      `${join(dir, 'scheduler_config.json')} is ${config.length + 1} bytes, but model.json records ${config.length}`,
    );
  });

  it('files that lack a file the load reads is ERR_MODEL naming it', async () => {
    const dir = withManifest((m) => delete (m.files as Record<string, unknown>)['unet.pt']);
    const e = await loadError(dir);
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain('records no size and SHA-256 for unet.pt');
  });

  it.each([
    ['a negative size', { 'unet.pt': { size: -1, sha256: 'a'.repeat(64) } }, 'files.unet.pt must be'],
    ['a short digest', { 'unet.pt': { size: 1, sha256: 'abc' } }, 'files.unet.pt must be'],
    ['a path', { '../unet.pt': { size: 1, sha256: 'a'.repeat(64) } }, 'not a plain file name'],
    ['not an object', [1, 2], 'files must be an object'],
  ])('a malformed files record (%s) is ERR_MODEL naming model.json', async (_, files, says) => {
    const dir = withManifest((m) => (m.files = files));
    const e = await loadError(dir);
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain(join(dir, 'model.json'));
    expect(e.message).toContain(says);
  });

  it('verifyHashes must be a boolean', async () => {
    const e = await loadError(golden, { verifyHashes: 'yes' });
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toContain('verifyHashes');
  });
});

describe('a model directory exported before files were recorded', () => {
  let dir: string;
  beforeAll(() => {
    dir = withManifest((m) => delete m.files);
  });

  it('loads, with a FastComposerWarning saying its files are not checked', async () => {
    const seen: Error[] = [];
    const listener = (w: Error): void => void seen.push(w);
    process.on('warning', listener);
    try {
      const fc = await FastComposer.load(dir, { device: 'cpu' });
      await new Promise((resolve) => setImmediate(resolve)); // process warnings are emitted on the next tick
      expect(fc.model.warnings).toEqual([expect.stringContaining('records no file sizes or SHA-256 digests')]);
      await fc.dispose();
    } finally {
      process.off('warning', listener);
    }
    const ours = seen.filter((w) => w.name === 'FastComposerWarning');
    expect(ours.map((w) => [(w as Error & { code?: string }).code, w.message])).toEqual([
      ['FASTCOMPOSER_MODEL', expect.stringContaining(`${join(dir, 'model.json')} records no file sizes`)],
    ]);
  });

  it('is ERR_MODEL with verifyHashes: there is nothing to check them against', async () => {
    const e = await loadError(dir, { verifyHashes: true });
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain('cannot be verified');
  });

  it('verify() reports every file as unrecorded, and not ok', async () => {
    const v = await FastComposer.verify(dir);
    expect(v.files.every((f) => f.status === 'unrecorded' && f.sha256?.length === 64)).toBe(true);
    expect(v.modules.every((m) => m.error === undefined)).toBe(true);
    expect(v.ok).toBe(false);
  });
});

describe('fastcomposer info --verify', () => {
  it("prints every file, model.json's digest and ok for the golden export, with exit code 0", () => {
    const r = infoVerify(golden);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`model.json  sha256 ${sha256(readFileSync(join(golden, 'model.json')))}`);
    const unet = readFileSync(join(golden, 'unet.pt'));
    expect(r.stdout).toContain(`ok          unet.pt (${unet.length} bytes, sha256 ${sha256(unet)})`);
    expect(r.stdout).toMatch(/code ok {5}unet\.pt: \d+ operators, all allowed/);
    expect(r.stdout).toContain('result         ok');
  });
});

describe('hashing', () => {
  it('gives the digest of the whole file and lets the event loop run between chunks', async () => {
    const data = Buffer.alloc(48 << 20);
    for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
    const file = join(scratch, 'big.bin');
    writeFileSync(file, data);
    let ticks = 0;
    let hashing = true;
    const tick = (): void => {
      ticks++;
      if (hashing) setImmediate(tick);
    };
    setImmediate(tick);
    const digest = await sha256File(file);
    hashing = false;
    expect(digest).toBe(sha256(data));
    expect(ticks).toBeGreaterThan(10); // 48 chunks of 1 MiB: the loop turned between them
  });
});
