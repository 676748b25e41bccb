// What a CPU load does to the weights, and the CPU dtypes: the files are mapped and read in place
// until the load ends (native/mapped_load.h), convolutions and linear layers are prepacked for
// oneDNN (native/prepack.h), load() reports where its time went, and bfloat16/float16 are
// accepted or refused by what the CPU can do.
import { cpSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';

import { FastComposer } from '../lib/index.js';
import { loadNative } from '../lib/native.js';
import { float32View } from '../lib/tensor.js';
import { cpuHasOneDnnBfloat16 } from './helpers/cpu-features.js';
import { TWO_SUBJECT_JOB } from './helpers/jobs.js';
import { loadWithEnv as loadWith, prepackedOf } from './helpers/load-with-env.js';
import { relativeError } from './helpers/safetensors.js';

const JOB = TWO_SUBJECT_JOB;

describe('CPU load', () => {
  const open: FastComposer[] = [];
  const temp: string[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((fc) => fc.dispose()));
  });
  afterAll(() => {
    for (const dir of temp) rmSync(dir, { recursive: true, force: true });
  });

  it('reports where the load time went', async () => {
    const fc = await loadWith({});
    open.push(fc);
    const t = fc.loadTimings;
    for (const key of [
      'manifestMs',
      'tokenizerMs',
      'readMs',
      'deserializeMs',
      'auditMs',
      'convertMs',
      'passesMs',
      'prepackMs',
      'warmupMs',
      'totalMs',
      'loadMs',
    ] as const) {
      expect(t[key], key).toBeGreaterThanOrEqual(0);
    }
    expect(t.deserializeMs).toBeGreaterThan(0);
    expect(t.auditMs).toBeGreaterThan(0);
    const phases = t.readMs + t.deserializeMs + t.auditMs + t.convertMs + t.passesMs + t.prepackMs + t.warmupMs;
    expect(phases).toBeLessThanOrEqual(t.totalMs + 1);
    expect(t.totalMs + t.manifestMs + t.tokenizerMs).toBeLessThanOrEqual(t.loadMs + 1);
  });

  it('prepacks convolutions and linear layers with the numbers of the plain model', async () => {
    // FASTCOMPOSER_PREPACK_CONV=1: also on CPUs where the default leaves convolutions to ATen.
    const packed = await loadWith({ FASTCOMPOSER_PREPACK_CONV: '1' });
    const plain = await loadWith({ FASTCOMPOSER_PREPACK: '0' });
    const packedConvOnly = await loadWith({ FASTCOMPOSER_PREPACK_CONV: '1', FASTCOMPOSER_PREPACK_LINEAR: '0' });
    open.push(packed, plain, packedConvOnly);
    expect(prepackedOf(packed).convolutions).toBeGreaterThan(0);
    expect(prepackedOf(packed).linears).toBeGreaterThan(0);
    expect(prepackedOf(plain)).toEqual({ convolutions: 0, linears: 0, weights: 0, bytes: 0, fromCache: 0 });
    expect(prepackedOf(packedConvOnly).linears).toBe(0);
    const a = await packed.generate(JOB);
    const b = await plain.generate(JOB);
    const c = await packedConvOnly.generate(JOB);
    // oneDNN's linear layers round differently from the BLAS in the last bits; its convolutions
    // are the ones ATen calls.
    expect(relativeError(float32View(a.latents), float32View(b.latents))).toBeLessThan(1e-4);
    expect(relativeError(float32View(c.latents), float32View(b.latents))).toBeLessThan(1e-5);
  });

  it('convolutions left to ATen (FASTCOMPOSER_PREPACK_CONV=0, and by default where the CPU lays weights out by input size) give the same numbers', async () => {
    const noConv = await loadWith({ FASTCOMPOSER_PREPACK_CONV: '0' });
    const conv = await loadWith({ FASTCOMPOSER_PREPACK_CONV: '1' });
    const byDefault = await loadWith({});
    open.push(noConv, conv, byDefault);
    expect(prepackedOf(noConv).convolutions).toBe(0);
    expect(prepackedOf(noConv).linears).toBe(prepackedOf(conv).linears);
    expect(prepackedOf(conv).convolutions).toBeGreaterThan(0);
    expect([0, prepackedOf(conv).convolutions]).toContain(prepackedOf(byDefault).convolutions);
    const a = await noConv.generate(JOB);
    const b = await conv.generate(JOB);
    expect(relativeError(float32View(a.latents), float32View(b.latents))).toBeLessThan(1e-5);
  });

  it('reads the files in place without keeping them: the same numbers, and a file cut after load() changes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fastcomposer-mapped-'));
    temp.push(dir);
    cpSync(inject('goldenModelDir'), dir, { recursive: true });
    const mapped = await loadWith({}, {}, dir);
    const copied = await loadWith({ FASTCOMPOSER_MAP_WEIGHTS: '0' });
    open.push(mapped, copied);
    expect(mapped.loadTimings.readMs).toBeGreaterThan(0);
    expect(copied.loadTimings.readMs).toBe(0);
    // A mapping still in use would fault (SIGBUS) on the cut pages.
    for (const file of ['unet.pt', 'vae_decoder.pt', 'text_encoder.pt', 'image_encoder.pt', 'postfuse.pt'])
      truncateSync(join(dir, file), 0);
    const a = await mapped.generate(JOB);
    const b = await copied.generate(JOB);
    expect(relativeError(float32View(a.latents), float32View(b.latents))).toBe(0);
  });

  it("a weight given memory of its own leaves the process's resident pages at once; the file's bytes read again are unchanged", () => {
    // A zip entry as torch's writer stores one: local header (method 0, stored) at 0, data at 64.
    const dir = mkdtempSync(join(tmpdir(), 'fastcomposer-record-'));
    temp.push(dir);
    const size = 16 << 20;
    const file = Buffer.alloc(64 + size + 100);
    file.writeUInt32LE(0x04034b50, 0);
    for (let i = 0; i < size; i++) file[64 + i] = (i * 7) & 0xff;
    const path = join(dir, 'record.pt');
    writeFileSync(path, file);
    let sum = 0;
    for (let i = 0; i < size; i++) sum += file[64 + i]!;
    const r = loadNative().binding.testing.mappedRecordResidency(path, 0, 64, size);
    expect(r.mapped).toBeGreaterThanOrEqual(size);
    // Every page wholly inside the record went (the two it shares with its neighbours stay:
    // 8 KiB here, more where pages are larger).
    expect(r.mapped - r.released).toBeGreaterThan(size - (256 << 10));
    expect(r.sum).toBe(sum);
  });
});

describe('CPU dtypes', () => {
  it('bfloat16 is refused with ERR_DEVICE on a CPU without native bfloat16 (FASTCOMPOSER_CPU_BF16=0 acts as one)', async () => {
    await expect(loadWith({ FASTCOMPOSER_CPU_BF16: '0' }, { dtype: 'bfloat16' })).rejects.toMatchObject({
      code: 'ERR_DEVICE',
      message: expect.stringContaining('AVX512-BF16'),
    });
  });

  it('bfloat16 runs where allowed, close to float32', async () => {
    const b16 = await loadWith({ FASTCOMPOSER_CPU_BF16: '1' }, { dtype: 'bfloat16' });
    const f32 = await loadWith({});
    try {
      expect(b16.dtype).toBe('bfloat16');
      // oneDNN's prepacked weights where it has bfloat16 kernels, ATen's own elsewhere.
      const packsBf16 = cpuHasOneDnnBfloat16();
      if (packsBf16 !== undefined) expect(prepackedOf(b16).weights > 0).toBe(packsBf16);
      const a = await b16.generate(JOB);
      const b = await f32.generate(JOB);
      expect(a.latents.dtype).toBe('float32');
      const err = relativeError(float32View(a.latents), float32View(b.latents));
      expect(err).toBeGreaterThan(0); // it did run in bfloat16
      expect(err).toBeLessThan(0.1);
    } finally {
      await Promise.all([b16.dispose(), f32.dispose()]);
    }
  });

  it('float16 is refused on the CPU with ERR_INVALID_ARGUMENT', async () => {
    await expect(loadWith({}, { dtype: 'float16' })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('float16 is not supported on cpu'),
    });
  });
});
