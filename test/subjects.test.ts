import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, inject, it } from 'vitest';
import { FastComposerError } from '../lib/errors.js';
import { FastComposer } from '../lib/index.js';
import { loadNative } from '../lib/native.js';
import { boxMask, decodeSubject, decodeSubjects, loadRegionMask, resizeAntialiased, type Rgb, rgbTensor } from '../lib/subjects.js';
import type { RawImage, SubjectInput } from '../lib/options.js';
import type { Tensor } from '../lib/tensor.js';

const SUBJECTS = join(import.meta.dirname, 'fixtures/tiny-a/release/subjects');
const REFS = join(import.meta.dirname, 'fixtures/subjects');
const N = 224 * 224 * 3;

/** Same formula as fixtures/subjects/make_reference.py `synthetic`. */
function synthetic(w: number, h: number): RawImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = (x * x * 3 + y * y * 5 + x * y + c * 85 + ((x ^ y) & 31) * 4) & 255;
  return { data, width: w, height: h, channels: 3 };
}

/** Same as make_reference.py `mask_circle`: a white disc, a dark grey ramp (< 128) outside. */
function maskCircle(w: number, h: number): RawImage {
  const data = new Uint8Array(w * h);
  const r = Math.min(w, h) * 0.4;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const inside = (x - w / 2) ** 2 + (y - h / 2) ** 2 < r ** 2;
      data[y * w + x] = inside ? 255 : Math.floor((x * 127) / Math.max(w - 1, 1));
    }
  return { data, width: w, height: h, channels: 1 };
}

function rgb(r: RawImage): Rgb {
  expect(r.channels).toBe(3);
  return { data: Buffer.from(r.data), width: r.width, height: r.height };
}

/** The native pad + resize (what generate() runs on its worker), synchronously. */
function nativePixels(images: Rgb[] | Tensor[], size = 224): Buffer {
  const tensors = images.map((t) => ('dtype' in t ? t : rgbTensor(t)));
  const out = loadNative().binding.testing.prepareSubjectPixels(tensors, size);
  expect(out.shape).toEqual([images.length, size, size, 3]);
  expect(out.dtype).toBe('uint8');
  return out.data;
}

/** decodeSubject (TS: sharp, mask) then the native pad + resize: the whole preprocessing. */
async function prepareSubject(subject: SubjectInput, label?: string): Promise<Buffer> {
  return nativePixels([await decodeSubject(subject, label)]);
}

async function raw(path: string): Promise<RawImage> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels as 3 };
}

function diff(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  expect(a.length).toBe(b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

async function rejectsWithImageError(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FastComposerError);
  expect((err as FastComposerError).code).toBe('ERR_IMAGE');
  for (const part of parts) expect((err as Error).message).toMatch(part);
}

describe('the native subject pad + resize matches the reference preprocessing (torchvision 0.14 on torch)', () => {
  // Golden outputs written by fixtures/subjects/make_reference.py. The native side runs torch's
  // own float32 kernel (native/subject_pixels.cc); measured: max 0, mean 0 on every case
  // (bit-exact). PIL's BILINEAR and torch's uint8 kernel are each max 1 away from the reference
  // (fixtures/subjects/reference_neighbours.json); sharp's best kernel is max 5-16.
  const cases: [string, () => RawImage | string][] = [
    ['s2_300x200', () => join(SUBJECTS, 's2_300x200.png')],
    ['s3_180x260', () => join(SUBJECTS, 's3_180x260.png')],
    ['syn_300x300', () => synthetic(300, 300)],
    ['syn_1024x1024', () => synthetic(1024, 1024)],
    ['syn_180x180', () => synthetic(180, 180)],
    ['syn_301x200', () => synthetic(301, 200)],
    ['syn_640x960', () => synthetic(640, 960)],
  ];
  for (const [name, input] of cases) {
    it(`${name}: bit-exact`, async () => {
      const out = await prepareSubject(input(), name);
      const ref = await raw(join(REFS, `${name}.ref.png`));
      expect(diff(out, ref.data)).toEqual({ max: 0, mean: 0 });
    });
  }

  it('224x224 pictures pass through unchanged', async () => {
    for (const f of ['s0_224x224.png', 's1_224x224.png']) {
      const out = await prepareSubject(join(SUBJECTS, f));
      expect(Buffer.compare(out, (await raw(join(SUBJECTS, f))).data)).toBe(0);
    }
  });

  it('subjectMask: dark mask pixels turn black before the pad', async () => {
    const image = join(SUBJECTS, 's2_300x200.png');
    const ref = await raw(join(REFS, 's2_300x200_masked.ref.png'));
    const mask = maskCircle(300, 200);
    expect(diff(await prepareSubject({ image, subjectMask: mask }), ref.data).max).toBe(0);
    const maskPng = await sharp(mask.data, { raw: { width: 300, height: 200, channels: 1 } })
      .png()
      .toBuffer();
    expect(diff(await prepareSubject({ image, subjectMask: maskPng }), ref.data).max).toBe(0);
  });
});

describe('native prepareSubjectPixels', () => {
  it('several pictures of different sizes come out in order', async () => {
    const list = [join(SUBJECTS, 's0_224x224.png'), join(SUBJECTS, 's2_300x200.png'), { image: join(SUBJECTS, 's3_180x260.png') }];
    const all = nativePixels(await decodeSubjects(list));
    expect(all.length).toBe(3 * N);
    for (let i = 0; i < 3; i++) expect(Buffer.compare(all.subarray(i * N, (i + 1) * N), await prepareSubject(list[i]!))).toBe(0);
    expect(nativePixels([]).length).toBe(0);
  });

  it('another output size', () => {
    expect(nativePixels([rgb(synthetic(300, 200))], 64).length).toBe(64 * 64 * 3);
  });

  it('a large picture (resized in bands of rows) gets the numbers of one whole-picture resize', () => {
    // No reference fixture is large enough for several bands (16 MiB of float32 rows each), so
    // this compares with the TypeScript port of the same kernel on the explicitly padded picture
    // (resizeAntialiased, bit-exact on the fixtures).
    for (const [w, h] of [
      [3000, 2600],
      [1900, 3100],
    ] as const) {
      const img = rgb(synthetic(w, h));
      const side = Math.max(w, h);
      const pad = Math.floor(Math.abs(w - h) / 2);
      const pw = w < h ? w + 2 * pad : w;
      const ph = h < w ? h + 2 * pad : h;
      const canvas = new Uint8Array(pw * ph * 3);
      for (let y = 0; y < h; y++) {
        const dst = ((y + (h < w ? pad : 0)) * pw + (w < h ? pad : 0)) * 3;
        canvas.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), dst);
      }
      expect(Math.max(pw, ph)).toBe(side);
      const f = resizeAntialiased(canvas, { width: pw, height: ph, channels: 3 }, 224, 224);
      const want = Uint8Array.from(f, (v) => {
        const r = Math.round(v);
        return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r; // torch.round: half to even
      });
      expect(diff(nativePixels([img]), want)).toEqual({ max: 0, mean: 0 });
    }
  });

  it('rejects what is not a non-empty uint8 [H,W,3] picture, naming it', () => {
    const { testing } = loadNative().binding;
    const ok = rgbTensor({ data: Buffer.alloc(12), width: 2, height: 2 });
    const call = (t: Tensor, size = 224) => {
      try {
        testing.prepareSubjectPixels([ok, t], size);
      } catch (e) {
        return e as Error & { code?: string };
      }
      throw new Error('did not throw');
    };
    const rgba = call({ data: Buffer.alloc(16), shape: [2, 2, 4], dtype: 'uint8' });
    expect(rgba.code).toBe('ERR_INVALID_ARGUMENT');
    expect(rgba.message).toMatch(/subjectImages\[1\].*uint8 \[H,W,3\].*\[2,2,4\]/);
    expect(call({ data: Buffer.alloc(48), shape: [2, 2, 3], dtype: 'float32' }).code).toBe('ERR_INVALID_ARGUMENT');
    expect(call({ data: Buffer.alloc(12), shape: [12], dtype: 'uint8' }).code).toBe('ERR_INVALID_ARGUMENT');
    const empty = call({ data: Buffer.alloc(0), shape: [0, 5, 3], dtype: 'uint8' });
    expect(empty.code).toBe('ERR_IMAGE');
    expect(empty.message).toMatch(/subjectImages\[1\].*empty/);
    expect(call({ data: Buffer.alloc(11), shape: [2, 2, 3], dtype: 'uint8' }).code).toBe('ERR_INVALID_ARGUMENT');
    expect(call(ok, 0).code).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe('input kinds', () => {
  const path = join(SUBJECTS, 's2_300x200.png');

  it('a path, an encoded Buffer, a Uint8Array and raw pixels decode to the same bytes', async () => {
    const fromPath = await decodeSubject(path);
    expect([fromPath.width, fromPath.height, fromPath.data.length]).toEqual([300, 200, 300 * 200 * 3]);
    const encoded = await sharp(path).png().toBuffer();
    expect(Buffer.compare((await decodeSubject(encoded)).data, fromPath.data)).toBe(0);
    expect(Buffer.compare((await decodeSubject(new Uint8Array(encoded))).data, fromPath.data)).toBe(0);
    const rawIn = await raw(path);
    const fromRaw = await decodeSubject(rawIn);
    expect(Buffer.compare(fromRaw.data, fromPath.data)).toBe(0);
    expect(fromRaw.data.buffer).not.toBe(rawIn.data.buffer); // a copy: the caller may reuse its buffer
  });

  it('alpha is dropped, not composited (PIL convert("RGB"))', async () => {
    const rgb = await raw(path);
    const rgba = new Uint8Array(300 * 200 * 4);
    for (let p = 0; p < 300 * 200; p++) {
      rgba.set(rgb.data.subarray(p * 3, p * 3 + 3), p * 4);
      rgba[p * 4 + 3] = p % 251; // mostly translucent
    }
    const want = await prepareSubject(rgb);
    const rawRgba: RawImage = { data: rgba, width: 300, height: 200, channels: 4 };
    expect(Buffer.compare(await prepareSubject(rawRgba), want)).toBe(0);
    const png = await sharp(rgba, { raw: { width: 300, height: 200, channels: 4 } })
      .png()
      .toBuffer();
    expect(Buffer.compare(await prepareSubject(png), want)).toBe(0);
  });

  it('grey pictures are replicated to RGB', async () => {
    const grey = new Uint8Array(180 * 260).map((_, i) => (i * 7) & 255);
    const rgb = new Uint8Array(180 * 260 * 3).map((_, i) => grey[Math.floor(i / 3)]!);
    const want = await prepareSubject({ data: rgb, width: 180, height: 260, channels: 3 });
    expect(Buffer.compare(await prepareSubject({ data: grey, width: 180, height: 260, channels: 1 }), want)).toBe(0);
    const png = await sharp(grey, { raw: { width: 180, height: 260, channels: 1 } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
    expect((await sharp(png).metadata()).channels).toBe(1);
    expect(Buffer.compare(await prepareSubject(png), want)).toBe(0);
  });

  it('decodeSubjects keeps the order', async () => {
    const list = [join(SUBJECTS, 's0_224x224.png'), path, { image: join(SUBJECTS, 's3_180x260.png') }];
    const all = await decodeSubjects(list);
    expect(all.map((r) => [r.width, r.height])).toEqual([
      [224, 224],
      [300, 200],
      [180, 260],
    ]);
    expect(await decodeSubjects([])).toEqual([]);
  });
});

describe('bad pictures reject with ERR_IMAGE naming the subject', () => {
  const good = join(SUBJECTS, 's0_224x224.png');
  const at1 = (bad: unknown) => decodeSubjects([good, bad as RawImage]);

  it('empty buffer', () => rejectsWithImageError(at1(Buffer.alloc(0)), 'subjects[1]', /empty/));
  it('random bytes', () => {
    const bytes = Buffer.alloc(4096);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
    return rejectsWithImageError(at1(bytes), 'subjects[1]', /cannot decode/);
  });
  it('truncated PNG', async () => {
    const png = await sharp(join(SUBJECTS, 's2_300x200.png')).png().toBuffer();
    await rejectsWithImageError(at1(png.subarray(0, png.length >> 1)), 'subjects[1]', /cannot decode/);
  });
  it('truncated JPEG', async () => {
    const jpg = await sharp(join(SUBJECTS, 's2_300x200.png')).jpeg().toBuffer();
    await rejectsWithImageError(at1(jpg.subarray(0, Math.floor(jpg.length * 0.6))), 'subjects[1]', /cannot decode/);
  });
  it('a PNG declaring 50000x50000 (decompression bomb)', () =>
    rejectsWithImageError(at1(bombPng(50000, 50000)), 'subjects[1]', /more than 67108864 pixels/));
  it('a real picture over a lowered limitInputPixels', async () => {
    const big = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    expect(big.length).toBeLessThan(100_000); // a bomb: small file, large picture
    await rejectsWithImageError(decodeSubjects([big], { limitInputPixels: 1000 * 1000 }), 'subjects[0]', /more than 1000000 pixels/);
  });
  it('raw data of the wrong length', () =>
    rejectsWithImageError(at1({ data: new Uint8Array(100), width: 10, height: 10, channels: 3 }), 'subjects[1]', /100 bytes.*300/));
  it('raw with bad channels or sizes', async () => {
    await rejectsWithImageError(at1({ data: new Uint8Array(200), width: 10, height: 10, channels: 2 }), 'subjects[1]', /channels/);
    await rejectsWithImageError(at1({ data: new Uint8Array(0), width: 0, height: 10, channels: 3 }), 'subjects[1]', /positive/);
  });
  it('a missing file', () => rejectsWithImageError(at1('/nonexistent/dir/x.png'), 'subjects[1]', /ENOENT/));
  it('a directory or an empty file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fc-subjects-'));
    await rejectsWithImageError(at1(dir), 'subjects[1]', /not a file/);
    await writeFile(join(dir, 'empty.png'), '');
    await rejectsWithImageError(at1(join(dir, 'empty.png')), 'subjects[1]', /empty/);
  });
  it('a subjectMask of another size names the mask', () =>
    rejectsWithImageError(at1({ image: good, subjectMask: maskCircle(10, 10) }), 'subjects[1].subjectMask', /10x10.*224x224/));
  it('a corrupt subjectMask names the mask', () =>
    rejectsWithImageError(at1({ image: good, subjectMask: Buffer.from('nope') }), 'subjects[1].subjectMask'));
  it('a value that is no picture at all is ERR_INVALID_ARGUMENT', async () => {
    const err = await at1(42).catch((e: unknown) => e);
    expect((err as FastComposerError).code).toBe('ERR_INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(/subjects\[1\]/);
  });
});

describe('region masks', () => {
  it('loadRegionMask stretches to the output size with white = 1', async () => {
    const w = 64;
    const h = 32;
    const data = new Uint8Array(w * h).map((_, i) => (i % w >= w / 2 ? 255 : 0));
    const png = await sharp(data, { raw: { width: w, height: h, channels: 1 } })
      .png()
      .toBuffer();
    const m = await loadRegionMask(png, 128, 96);
    expect(m).toBeInstanceOf(Float32Array);
    expect(m.length).toBe(128 * 96);
    expect(m[10 * 128 + 5]).toBe(0);
    expect(m[10 * 128 + 120]).toBe(1);
    expect(m[50 * 128 + 63]! + m[50 * 128 + 64]!).toBeCloseTo(1, 5); // symmetric edge
    for (const v of m) expect(v >= 0 && v <= 1).toBe(true);
    const same = await loadRegionMask({ data, width: w, height: h, channels: 1 }, w, h);
    expect(Array.from(same)).toEqual(Array.from(data, (v) => v / 255).map(Math.fround));
  });

  it('loadRegionMask errors name the label', () =>
    rejectsWithImageError(loadRegionMask(Buffer.from('bad'), 64, 64, { label: 'regions[2]' }), 'regions[2]'));

  it('boxMask gives pixel coverage', () => {
    const m = boxMask({ left: 1.5, top: 0, width: 2, height: 1 }, 4, 2);
    expect(Array.from(m)).toEqual([0, 0.5, 1, 0.5, 0, 0, 0, 0]);
    const full = boxMask({ left: -10, top: -10, width: 100, height: 100 }, 8, 4);
    expect(full.every((v) => v === 1)).toBe(true);
    expect(() => boxMask({ left: 0, top: 0, width: 0, height: 1 }, 4, 4)).toThrow(/box.width/);
  });
});

describe('generate() keeps the event loop free while it prepares a large subject', () => {
  // The pad + resize runs on the native worker; sharp decodes on libuv's pool. Left on the main
  // thread: copying the raw pixels (twice, ~36 MB each here) and the tiny model's own JS work.
  // Measured on a 2-core x86-64 machine: 4000x3000 raw took 380-600 ms of blocked loop with the old
  // TypeScript resize; now 35-40 ms (the copy of the raw input, lib/subjects.ts rawToRgb), and
  // 130-220 ms on a virtual machine where each fresh 4 kB page of that copy costs a slow fault.
  // The bound sits between the two paths.
  it('4000x3000 raw: a 10 ms interval keeps ticking', async () => {
    const fc = await FastComposer.load(inject('goldenModelDir'), { device: 'cpu' });
    try {
      const big = synthetic(4000, 3000);
      const opts = {
        prompt: 'a man <|image|> in a park',
        subjects: [big],
        steps: 2,
        width: 64,
        height: 64,
        seed: 1,
        output: 'raw' as const,
      };
      const first = await fc.generate(opts); // warm-up
      let worst = Infinity;
      for (let r = 0; r < 5 && worst >= 300; r++) {
        let last = performance.now();
        let maxGap = 0;
        const timer = setInterval(() => {
          const t = performance.now();
          maxGap = Math.max(maxGap, t - last);
          last = t;
        }, 10);
        const res = await fc.generate(opts);
        clearInterval(timer);
        maxGap = Math.max(maxGap, performance.now() - last);
        expect(Buffer.compare(res.images[0]!.data, first.images[0]!.data)).toBe(0);
        worst = Math.min(worst, maxGap);
      }
      // The best of up to 5 tries, so a busy machine does not fail it; the old path never got under 380 ms.
      expect(worst).toBeLessThan(300);
    } finally {
      await fc.dispose();
    }
  });
});

/** A valid PNG header declaring w x h with almost no pixel data. */
function bombPng(w: number, h: number): Buffer {
  const chunk = (type: string, body: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), body]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1024))), chunk('IEND', Buffer.alloc(0))]);
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
