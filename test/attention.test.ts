// Localized cross-attention at inference: attention maps, subject regions (box or mask,
// regionStrength, regionExclusive), background masks for subject pictures, and the guarantee
// that without them the numbers are those of the plain pipeline. On the golden tiny-a model.
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, FastComposerError, type GenerateOptions, type GenerateResult, type Region } from '../lib/index.js';
import { validateGenerateOptions } from '../lib/options.js';
import type { RawImage } from '../lib/options.js';
import { float32View, type Tensor } from '../lib/tensor.js';
import { relativeError } from './helpers/safetensors.js';

const SUBJECTS = join(import.meta.dirname, 'fixtures', 'tiny-a', 'release', 'subjects');
const S0 = join(SUBJECTS, 's0_224x224.png');
const S1 = join(SUBJECTS, 's1_224x224.png');
const W = 128;
const H = 96;
const LEFT: Region = { x: 0, y: 0, width: W / 2, height: H };
const RIGHT: Region = { x: W / 2, y: 0, width: W / 2, height: H };
// 12 steps, alpha 0.7: steps 4..11 are subject-conditioned (i > 3.6).
const BASE = {
  prompt: 'a man <|image|> and a woman <|image|> sitting in a park, oil painting',
  negativePrompt: 'blurry, ugly',
  steps: 12,
  seed: 7,
  width: W,
  height: H,
} satisfies Partial<GenerateOptions>;

/** The maps of one image and subject, [h*w]. */
function mapOf(maps: Tensor, image: number, subject: number): Float32Array {
  const [, s, h, w] = maps.shape as [number, number, number, number];
  return float32View(maps).subarray((image * s + subject) * h * w, (image * s + subject + 1) * h * w);
}

/** Share of a map's mass in the latent cells whose centre lies in the box (output pixels). */
function massInside(maps: Tensor, image: number, subject: number, box: Region): number {
  const [, , h, w] = maps.shape as [number, number, number, number];
  const map = mapOf(maps, image, subject);
  let inside = 0;
  let total = 0;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const v = map[y * w + x]!;
      total += v;
      const cx = (x + 0.5) * 8;
      const cy = (y + 0.5) * 8;
      if (cx >= box.x && cx < box.x + box.width && cy >= box.y && cy < box.y + box.height) inside += v;
    }
  return inside / total;
}

function sums(maps: Tensor): number[] {
  const [n, s] = maps.shape as [number, number];
  const out: number[] = [];
  for (let i = 0; i < n; i++) for (let k = 0; k < s; k++) out.push(mapOf(maps, i, k).reduce((a, b) => a + b, 0));
  return out;
}

function bytesEqual(a: Tensor, b: Tensor): boolean {
  return a.data.equals(b.data);
}

/** A white box on black at the output size, one channel. */
function boxPicture(box: Region): RawImage {
  const data = new Uint8Array(W * H);
  for (let y = box.y; y < box.y + box.height; y++) data.fill(255, y * W + box.x, y * W + box.x + box.width);
  return { data, width: W, height: H, channels: 1 };
}

describe('localized cross-attention', () => {
  let fc: FastComposer;
  let plain: GenerateResult;
  let withMaps: GenerateResult;
  let boxes: GenerateResult;

  beforeAll(async () => {
    fc = await FastComposer.load(inject('goldenModelDir'), { device: 'cpu' });
    plain = await fc.generate({ ...BASE, subjects: [S0, S1] });
    withMaps = await fc.generate({ ...BASE, subjects: [S0, S1], attentionMaps: true });
    boxes = await fc.generate({
      ...BASE,
      subjects: [
        { image: S0, region: LEFT },
        { image: S1, region: RIGHT },
      ],
      attentionMaps: true,
      regionStrength: 1,
    });
  });
  afterAll(() => fc?.dispose());

  it('without maps or regions the latents are bit-identical to the plain pipeline', async () => {
    expect(plain.attentionMaps).toBeUndefined();
    // Options that do nothing on their own: no maps, no regions (strength/exclusive without a region).
    const off = await fc.generate({ ...BASE, subjects: [S0, S1], attentionMaps: false, regionStrength: 0.3, regionExclusive: true });
    expect(off.attentionMaps).toBeUndefined();
    expect(bytesEqual(off.latents, plain.latents)).toBe(true);
    // A region at strength 0 is off: the plain forward runs, bit for bit.
    const zero = await fc.generate({ ...BASE, subjects: [{ image: S0, region: LEFT }, S1], regionStrength: 0 });
    expect(bytesEqual(zero.latents, plain.latents)).toBe(true);
    expect(Buffer.from(zero.images[0]!.data).equals(Buffer.from(plain.images[0]!.data))).toBe(true);
  });

  it('attentionMaps: true returns [numImages, subjects, h/8, w/8] float32 maps that each sum to 1', () => {
    const maps = withMaps.attentionMaps!;
    expect(maps.dtype).toBe('float32');
    expect(maps.shape).toEqual([1, 2, H / 8, W / 8]);
    expect(float32View(maps).every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
    for (const s of sums(maps)) expect(s).toBeCloseTo(1, 5);
  });

  it('attentionMaps alone does not steer: latents equal the plain run up to float rounding (not bit for bit)', () => {
    // forward_localized computes the softmax explicitly where forward uses the fused kernel, so the
    // latents may differ in the last bits (measured ~1e-5 absolute, ~1e-6 relative); nothing more.
    expect(relativeError(float32View(withMaps.latents), float32View(plain.latents))).toBeLessThan(1e-4);
  });

  it('maps per image with numImages > 1', async () => {
    const r = await fc.generate({ ...BASE, steps: 6, subjects: [S0, S1], numImages: 2, attentionMaps: true });
    expect(r.attentionMaps!.shape).toEqual([2, 2, H / 8, W / 8]);
    for (const s of sums(r.attentionMaps!)) expect(s).toBeCloseTo(1, 5);
    // Different noise, different maps.
    expect(mapOf(r.attentionMaps!, 0, 0)).not.toEqual(mapOf(r.attentionMaps!, 1, 0));
  });

  it('no subject-conditioned step (alpha 0): uniform maps; no subjects: no maps', async () => {
    const r = await fc.generate({ ...BASE, steps: 4, alpha: 0, subjects: [S0, S1], attentionMaps: true });
    const m = mapOf(r.attentionMaps!, 0, 1);
    for (const v of m) expect(v).toBeCloseTo(1 / m.length, 7);
    const none = await fc.generate({ ...BASE, steps: 2, prompt: 'a park', subjects: [], attentionMaps: true });
    expect(none.attentionMaps).toBeUndefined();
  });

  it("acceptance: boxes in opposite halves at strength 1 hold >= 90% of each subject's attention", () => {
    const maps = boxes.attentionMaps!;
    expect(maps.shape).toEqual([1, 2, H / 8, W / 8]);
    for (const s of sums(maps)) expect(s).toBeCloseTo(1, 5);
    const inside = [massInside(maps, 0, 0, LEFT), massInside(maps, 0, 1, RIGHT)];
    // Without regions each subject spreads over the picture: about the half's area (0.5).
    const free = [massInside(withMaps.attentionMaps!, 0, 0, LEFT), massInside(withMaps.attentionMaps!, 0, 1, RIGHT)];
    console.info(
      `attention mass inside the boxes: with regions ${inside.map((v) => v.toFixed(3)).join(',')}, without ${free.map((v) => v.toFixed(3)).join(',')}`,
    );
    for (const v of inside) expect(v).toBeGreaterThanOrEqual(0.9);
    for (const v of free) {
      expect(v).toBeGreaterThan(0.25);
      expect(v).toBeLessThan(0.75);
    }
  });

  it('regionStrength moves the mass smoothly between off and hard', async () => {
    const half = await fc.generate({
      ...BASE,
      subjects: [
        { image: S0, region: LEFT },
        { image: S1, region: RIGHT },
      ],
      attentionMaps: true,
      regionStrength: 0.5,
    });
    const at = (r: GenerateResult): number => massInside(r.attentionMaps!, 0, 0, LEFT);
    expect(at(half)).toBeGreaterThan(at(withMaps));
    expect(at(half)).toBeLessThan(at(boxes));
  });

  it('a mask equal to the box gives the same maps and latents as the box', async () => {
    const masked = await fc.generate({
      ...BASE,
      subjects: [
        { image: S0, mask: boxPicture(LEFT) },
        {
          image: S1,
          mask: await sharp(Buffer.from(boxPicture(RIGHT).data), { raw: { width: W, height: H, channels: 1 } })
            .png()
            .toBuffer(),
        },
      ],
      attentionMaps: true,
      regionStrength: 1,
    });
    expect(bytesEqual(masked.attentionMaps!, boxes.attentionMaps!)).toBe(true);
    expect(bytesEqual(masked.latents, boxes.latents)).toBe(true);
  });

  it("regionExclusive keeps a subject out of the other subjects' regions", async () => {
    // Only subject 0 has a region; subject 1 may go anywhere, but not into subject 0's box when exclusive.
    const subjects = [{ image: S0, region: LEFT }, S1];
    const shared = await fc.generate({ ...BASE, subjects, attentionMaps: true });
    const exclusive = await fc.generate({ ...BASE, subjects, attentionMaps: true, regionExclusive: true });
    const sharedIn = massInside(shared.attentionMaps!, 0, 1, LEFT);
    const exclusiveIn = massInside(exclusive.attentionMaps!, 0, 1, LEFT);
    expect(sharedIn).toBeGreaterThan(0.25);
    expect(exclusiveIn).toBeLessThan(0.1);
    // Subject 0 is confined either way.
    expect(massInside(exclusive.attentionMaps!, 0, 0, LEFT)).toBeGreaterThanOrEqual(0.9);
  });

  it('regionExclusive is a validated boolean, default false', () => {
    const ctx = { subjectCount: 0 };
    expect(validateGenerateOptions({ prompt: 'a' }, ctx).regionExclusive).toBe(false);
    expect(validateGenerateOptions({ prompt: 'a', regionExclusive: true }, ctx).regionExclusive).toBe(true);
    expect(() => validateGenerateOptions({ prompt: 'a', regionExclusive: 1 }, ctx)).toThrow(/boolean for regionExclusive/);
  });

  it('attentionHeatmap renders a map over the image as a PNG, hot where the subject attends', async () => {
    const png = await FastComposer.attentionHeatmap(boxes, 0);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels, info.format]).toEqual([W, H, 3, 'raw']);
    expect((await sharp(png).metadata()).format).toBe('png');
    // Remove the picture (opacity 0.5) and compare the colour map's brightness in the two halves.
    const image = boxes.images[0]!.data;
    let left = 0;
    let right = 0;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        let v = 0;
        for (let c = 0; c < 3; c++) v += data[(y * W + x) * 3 + c]! - 0.5 * image[(y * W + x) * 3 + c]!;
        if (x < W / 2) left += v;
        else right += v;
      }
    expect(left).toBeGreaterThan(2 * right);
    // Subject 1 is on the right.
    expect(Buffer.compare(await FastComposer.attentionHeatmap(boxes, 1), png)).not.toBe(0);
  });

  it('attentionHeatmap checks its arguments', () => {
    expect(() => FastComposer.attentionHeatmap(plain, 0)).toThrow(FastComposerError);
    expect(() => FastComposer.attentionHeatmap(boxes, 2)).toThrow(/subject/);
    expect(() => FastComposer.attentionHeatmap(boxes, 0, 1)).toThrow(/image/);
  });

  it('subjectMask: a mask changes the subject embedding, an all-white mask does not', async () => {
    const white: RawImage = { data: new Uint8Array(224 * 224).fill(255), width: 224, height: 224, channels: 1 };
    const half = new Uint8Array(224 * 224);
    for (let y = 0; y < 224; y++) half.fill(255, y * 224, y * 224 + 112);
    const bare = await fc.encodeSubjects([S0]);
    const allWhite = await fc.encodeSubjects([{ image: S0, subjectMask: white }]);
    const masked = await fc.encodeSubjects([{ image: S0, subjectMask: { data: half, width: 224, height: 224, channels: 1 } }]);
    expect(bytesEqual(allWhite, bare)).toBe(true);
    expect(relativeError(float32View(masked), float32View(bare))).toBeGreaterThan(1e-3);
    // End to end: the masked subject changes the picture; the all-white mask leaves it bit for bit.
    const r1 = await fc.generate({ ...BASE, steps: 6, subjects: [{ image: S0, subjectMask: white }, S1] });
    const r0 = await fc.generate({ ...BASE, steps: 6, subjects: [S0, S1] });
    const r2 = await fc.generate({
      ...BASE,
      steps: 6,
      subjects: [{ image: S0, subjectMask: { data: half, width: 224, height: 224, channels: 1 } }, S1],
    });
    expect(bytesEqual(r1.latents, r0.latents)).toBe(true);
    expect(bytesEqual(r2.latents, r0.latents)).toBe(false);
  });
});
