// Prepacked weights kept between CPU loads (native/prepack_cache.h): the first load writes a file
// per module, later loads map them instead of reordering, with the same numbers; a file that is
// cut, garbage, stale or crafted is never used and gets replaced; a cache that cannot be written
// costs a warning, not the load.
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeEach, describe, expect, inject, it } from 'vitest';

import type { FastComposer } from '../lib/index.js';
import { cpuHasOneDnnBfloat16 } from './helpers/cpu-features.js';
import { TWO_SUBJECT_JOB } from './helpers/jobs.js';
import { loadWithEnv, prepackedOf } from './helpers/load-with-env.js';

const MODULES = ['text_encoder', 'image_encoder', 'postfuse', 'unet', 'vae_decoder'];

describe('prepacked weights cached between CPU loads', () => {
  const open: FastComposer[] = [];
  const temp: string[] = [];
  let model: string;
  let cache: string;
  let reference: Buffer;

  const tempDir = (prefix: string): string => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    temp.push(dir);
    return dir;
  };
  const load = async (env: Record<string, string> = {}, options: { dtype?: 'bfloat16'; threads?: number } = {}): Promise<FastComposer> => {
    // Convolutions packed on every CPU (not only where their layout is the same for every input size).
    const fc = await loadWithEnv(
      { FASTCOMPOSER_PREPACK_CACHE: cache, FASTCOMPOSER_PREPACK_CACHE_MIN_MB: '0', FASTCOMPOSER_PREPACK_CONV: '1', ...env },
      options,
      model,
    );
    open.push(fc);
    return fc;
  };
  const pixels = async (fc: FastComposer): Promise<Buffer> => (await fc.generate(TWO_SUBJECT_JOB)).images[0]!.data;
  const files = (): string[] => readdirSync(cache).sort();
  const fileOf = (module: string): string => {
    const found = files().filter((f) => f.startsWith(`${module}-`));
    expect(found, `cache files of ${module}`).toHaveLength(1);
    return join(cache, found[0]!);
  };
  const packedCount = (fc: FastComposer): number => prepackedOf(fc).weights;

  beforeEach(async () => {
    model = tempDir('fastcomposer-prepack-model-');
    cpSync(inject('goldenModelDir'), model, { recursive: true });
    cache = join(tempDir('fastcomposer-prepack-cache-'), 'prepacked');
    reference ??= await pixels(await loadWithEnv({ FASTCOMPOSER_PREPACK_CACHE: '0' }, {}, model));
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((fc) => fc.dispose()));
  });
  afterAll(() => {
    for (const dir of temp) rmSync(dir, { recursive: true, force: true });
  });

  it('the first load writes a file per module; the next maps every packed weight from them, with the same pixels', async () => {
    const first = await load();
    expect(prepackedOf(first).fromCache).toBe(0);
    expect(files().map((f) => f.replace(/-.*/, ''))).toEqual([...MODULES].sort());
    for (const f of files()) expect(f).toMatch(/^[a-z_]+-[0-9a-f]{16}-[0-9a-f]{16}\.fcpack$/);
    const written = Object.fromEntries(files().map((f) => [f, statSync(join(cache, f)).mtimeMs]));

    const second = await load();
    expect(packedCount(second)).toBeGreaterThan(0);
    expect(packedCount(second)).toBeLessThanOrEqual(prepackedOf(second).convolutions + prepackedOf(second).linears);
    expect(prepackedOf(second).fromCache).toBe(packedCount(second));
    expect(prepackedOf(second).bytes).toBe(prepackedOf(first).bytes);
    // Nothing rewritten.
    expect(Object.fromEntries(files().map((f) => [f, statSync(join(cache, f)).mtimeMs]))).toEqual(written);

    expect((await pixels(first)).equals(reference)).toBe(true);
    expect((await pixels(second)).equals(reference)).toBe(true);
  });

  it('a file cut short, or with a garbage header, is not used and is written again', async () => {
    const packed = packedCount(await load());
    const unet = fileOf('unet');
    const size = statSync(unet).size;
    truncateSync(unet, Math.floor(size / 2));
    const vae = fileOf('vae_decoder');
    const bytes = readFileSync(vae);
    bytes.fill(0x5a, 8, 64);
    writeFileSync(vae, bytes);

    const again = await load();
    expect(prepackedOf(again).fromCache).toBeGreaterThan(0); // the three files left alone
    expect(prepackedOf(again).fromCache).toBeLessThan(packed);
    expect(statSync(fileOf('unet')).size).toBe(size);
    expect(readFileSync(fileOf('vae_decoder')).subarray(8, 64).equals(bytes.subarray(8, 64))).toBe(false);
    expect((await pixels(again)).equals(reference)).toBe(true);
    expect(prepackedOf(await load()).fromCache).toBe(packed);
  });

  it('packed bytes that disagree with a fresh reorder are caught by the check of the first weight, and replaced', async () => {
    const packed = packedCount(await load());
    const unet = fileOf('unet');
    const bytes = readFileSync(unet);
    const headerBytes = Number(bytes.readBigUInt64LE(8));
    const dataStart = Math.ceil((24 + headerBytes) / 4096) * 4096;
    bytes.fill(0, dataStart); // every weight zeroed, the header intact
    writeFileSync(unet, bytes);

    const again = await load();
    expect(prepackedOf(again).fromCache).toBeLessThan(packed);
    expect((await pixels(again)).equals(reference)).toBe(true);
    expect(
      readFileSync(fileOf('unet'))
        .subarray(dataStart)
        .some((b) => b !== 0),
    ).toBe(true);
  });

  it('a header whose entries point past the end, claim more bytes than their layout, or fail its digest is not used', async () => {
    const packed = packedCount(await load());
    const unet = fileOf('unet');
    const good = readFileSync(unet);
    const entries = parseEntries(good);
    expect(entries.length).toBeGreaterThan(0);

    // Each with the header's digest made to match, so that the field checks themselves are tried.
    const pastEnd = Buffer.from(good);
    pastEnd.writeBigUInt64LE(BigInt(good.length + 4096), entries[0]!.offsetAt);
    writeFileSync(unet, sealHeader(pastEnd));
    expect(prepackedOf(await load()).fromCache).toBeLessThan(packed);

    // More bytes than the layout holds (the data still inside the file).
    const tooLong = Buffer.from(readFileSync(fileOf('unet')));
    const e = parseEntries(tooLong)[0]!;
    tooLong.writeBigUInt64LE(tooLong.readBigUInt64LE(e.offsetAt + 8) + 4n, e.offsetAt + 8);
    writeFileSync(fileOf('unet'), sealHeader(tooLong));
    expect(prepackedOf(await load()).fromCache).toBeLessThan(packed);

    // A header damaged on disk (one bit of a layout descriptor, which goes to oneDNN) fails its digest.
    const flipped = Buffer.from(readFileSync(fileOf('unet')));
    flipped[parseEntries(flipped)[0]!.offsetAt - 40]! ^= 1;
    writeFileSync(fileOf('unet'), flipped);
    const again = await load();
    expect(prepackedOf(again).fromCache).toBeLessThan(packed);
    expect((await pixels(again)).equals(reference)).toBe(true);
  });

  it('a changed module file gets a new cache file, and the old one goes', async () => {
    const packed = packedCount(await load());
    const before = fileOf('unet');
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(model, 'unet.pt'), later, later);

    const again = await load();
    expect(prepackedOf(again).fromCache).toBeLessThan(packed);
    expect(prepackedOf(again).fromCache).toBeGreaterThan(0);
    const after = fileOf('unet'); // exactly one
    expect(after).not.toBe(before);
    expect(after.slice(0, after.lastIndexOf('-'))).toBe(before.slice(0, before.lastIndexOf('-'))); // same module file
    expect((await pixels(again)).equals(reference)).toBe(true);
  });

  it('float32 and bfloat16 loads of one model keep a file each', async () => {
    const packed = packedCount(await load());
    // FASTCOMPOSER_CPU_BF16: also on CPUs without native bfloat16 (slow there, but this is about files).
    const bf16 = { FASTCOMPOSER_CPU_BF16: '1' };
    const first = prepackedOf(await load(bf16, { dtype: 'bfloat16' }));
    // Where oneDNN has no bfloat16 kernels, a bfloat16 load packs nothing and writes no file.
    const packsBf16 = cpuHasOneDnnBfloat16() ?? first.weights > 0;
    const bf16Files = packsBf16 ? MODULES.length : 0;
    expect(first.weights > 0).toBe(packsBf16);
    expect(files()).toHaveLength(MODULES.length + bf16Files);
    expect(prepackedOf(await load()).fromCache).toBe(packed);
    expect(prepackedOf(await load(bf16, { dtype: 'bfloat16' })).fromCache).toBe(bf16Files > 0 ? first.weights : 0);
    expect(files()).toHaveLength(MODULES.length + bf16Files);
  });

  it('loads that leave convolutions to ATen keep a file of their own (FASTCOMPOSER_PREPACK_CONV=0)', async () => {
    const noConv = { FASTCOMPOSER_PREPACK_CONV: '0' };
    const first = prepackedOf(await load(noConv));
    expect(first.convolutions).toBe(0);
    expect(first.weights).toBeGreaterThan(0);
    expect(prepackedOf(await load(noConv)).fromCache).toBe(first.weights);
    // A load that packs convolutions finds nothing of its own, and replaces the file.
    const withConv = prepackedOf(await load());
    expect(withConv.fromCache).toBe(0);
    expect(withConv.weights).toBeGreaterThan(first.weights);
    expect(files()).toHaveLength(MODULES.length);
  });

  it('packed convolutions are kept per thread count (oneDNN may lay them out by it); without them the count does not matter', async () => {
    const two = prepackedOf(await load({}, { threads: 2 }));
    expect(two.convolutions).toBeGreaterThan(0);
    expect(prepackedOf(await load({}, { threads: 2 })).fromCache).toBe(two.weights);
    // Another thread count finds nothing of its own, and replaces the file.
    const one = prepackedOf(await load({}, { threads: 1 }));
    expect(one.fromCache).toBe(0);
    expect(one.weights).toBe(two.weights);
    expect(prepackedOf(await load({}, { threads: 1 })).fromCache).toBe(one.weights);
    expect(files()).toHaveLength(MODULES.length);
    const noConv = { FASTCOMPOSER_PREPACK_CONV: '0' };
    const linears = prepackedOf(await load(noConv, { threads: 2 })).weights;
    expect(prepackedOf(await load(noConv, { threads: 1 })).fromCache).toBe(linears);
  });

  it('no prepacking reads nothing; other prepack options read nothing packed for the defaults, and replace it', async () => {
    const packed = packedCount(await load());
    const plain = await load({ FASTCOMPOSER_PREPACK: '0' });
    expect(prepackedOf(plain)).toMatchObject({ convolutions: 0, linears: 0, fromCache: 0 });
    expect(prepackedOf(await load()).fromCache).toBe(packed);

    const convOnly = await load({ FASTCOMPOSER_PREPACK_LINEAR: '0' });
    expect(prepackedOf(convOnly).fromCache).toBe(0);
    expect(files()).toHaveLength(MODULES.length); // one file per module file
    expect(prepackedOf(await load({ FASTCOMPOSER_PREPACK_LINEAR: '0' })).fromCache).toBe(packedCount(convOnly));
    expect((await pixels(convOnly)).length).toBe(reference.length);
  });

  it('a folder that cannot be written: the load works and says so once; FASTCOMPOSER_PREPACK_CACHE=0 writes nothing', async () => {
    const blocker = join(tempDir('fastcomposer-prepack-blocked-'), 'a-file');
    writeFileSync(blocker, 'not a folder');
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }): void => {
      if (w.code === 'FASTCOMPOSER_LIBTORCH') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      const fc = await load({ FASTCOMPOSER_PREPACK_CACHE: join(blocker, 'prepacked') });
      await new Promise((resolve) => setImmediate(resolve));
      expect((await pixels(fc)).equals(reference)).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((m) => m.includes('could not be cached')).length).toBeGreaterThan(0);
    expect(warnings.join('\n')).toContain(join(blocker, 'prepacked'));

    await load({ FASTCOMPOSER_PREPACK_CACHE: '0' });
    expect(() => readdirSync(cache)).toThrow(/ENOENT/);
  });

  it('small modules are left out (FASTCOMPOSER_PREPACK_CACHE_MIN_MB, 64 by default); a bad value is named', async () => {
    await loadWithEnv({ FASTCOMPOSER_PREPACK_CACHE: cache }, {}, model).then((fc) => open.push(fc));
    expect(() => readdirSync(cache)).toThrow(/ENOENT/); // the tiny model's modules are far below 64 MB
    await expect(load({ FASTCOMPOSER_PREPACK_CACHE_MIN_MB: 'lots' })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('FASTCOMPOSER_PREPACK_CACHE_MIN_MB'),
    });
  });
});

/** The header's FNV-1a digest written for its bytes as they are now (native/prepack_cache.cc). */
function sealHeader(file: Buffer): Buffer {
  const size = Number(file.readBigUInt64LE(8));
  let h = 0xcbf29ce484222325n;
  for (const byte of file.subarray(24, 24 + size)) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  file.writeBigUInt64LE(h, 16);
  return file;
}

/** Where each entry's offset field sits in a cache file (the layout of native/prepack_cache.cc). */
function parseEntries(file: Buffer): { name: string; offsetAt: number }[] {
  let at = 24;
  const str = (): string => {
    const n = file.readUInt32LE(at);
    const s = file.toString('utf8', at + 4, at + 4 + n);
    at += 4 + n;
    return s;
  };
  const dims = (): void => {
    at += 1 + 8 * file.readUInt8(at);
  };
  str(); // identity
  const count = file.readUInt32LE(at);
  at += 4;
  const entries: { name: string; offsetAt: number }[] = [];
  for (let i = 0; i < count; i++) {
    const name = str();
    at += 1; // dtype
    dims();
    str(); // oneDNN's layout descriptor
    entries.push({ name, offsetAt: at });
    at += 16;
  }
  return entries;
}
