/**
 * Subject pictures, decoded the way FastComposer's inference reads them (PIL `convert("RGB")`),
 * with the optional subject mask applied. The rest of its preprocessing (fastcomposer/pipeline.py
 * `_encode_augmented_prompt`: PadToSquare(fill=0), then T.Resize((224, 224), BILINEAR,
 * antialias=True) on the uint8 tensor, i.e. float32 F.interpolate then torch.round) runs in the
 * native worker with libtorch's own kernel (native/subject_pixels.cc), off the event loop.
 * sharp only decodes (docs/IMAGES.md). Also: region masks for localized attention.
 */
import { readFile, stat } from 'node:fs/promises';
import { loadSharp } from './sharp-loader.js';
import { FastComposerError, invalidArgument } from './errors.js';
import { isBytes, isFiniteNumber, isInteger, isRecord } from './is.js';
import type { ImageInput, RawImage, SubjectSpec } from './options.js';
import type { Tensor } from './tensor.js';

/** What the decoder needs of a subject: the picture, and optionally its segmentation mask
 * (`subjectMask`: same size as `image`, white = subject; where it is dark the picture turns black). */
export type SubjectPicture = ImageInput | Pick<SubjectSpec, 'image' | 'subjectMask'>;

export interface DecodeOptions {
  /** Refuse pictures with more pixels than this (decompression bombs). Default MAX_INPUT_PIXELS. */
  limitInputPixels?: number;
}

/** 8192 x 8192: every phone camera up to ~60 MP; a decoded maximum is 192 MiB of RGB. */
export const MAX_INPUT_PIXELS = 8192 * 8192;
/** Mask pixels with luma at or above this are subject (binary, as the training segmentation). */
export const MASK_THRESHOLD = 128;

/** Decoded 8-bit RGB, HWC. */
export interface Rgb {
  data: Buffer;
  width: number;
  height: number;
}

/** All subjects, in order, decoded (and masked), at their own sizes: the native side pads and
 * resizes them (`subjectImages` of the native job). */
export async function decodeSubjects(subjects: readonly SubjectPicture[], options: DecodeOptions = {}): Promise<Rgb[]> {
  // Checked as a plain value: Array.isArray on a readonly array type would narrow it to any[].
  const given: unknown = subjects;
  if (!Array.isArray(given)) throw invalidArgument('an array of subject pictures', 'subjects', subjects);
  return Promise.all(subjects.map((s, i) => decodeSubject(s, `subjects[${i}]`, options)));
}

/** One subject decoded to RGB with its subjectMask applied; `label` names it in errors (e.g. "subjects[1]"). */
export async function decodeSubject(subject: SubjectPicture, label = 'subject', options: DecodeOptions = {}): Promise<Rgb> {
  const spec = isSpec(subject) ? subject : { image: subject };
  const [img, mask] = await Promise.all([
    decodeRgb(spec.image, label, options),
    spec.subjectMask === undefined ? undefined : decodeRgb(spec.subjectMask, `${label}.subjectMask`, options),
  ]);
  if (mask) applySubjectMask(img, mask, label);
  return img;
}

/** An Rgb as the uint8 [H, W, 3] tensor the native binding takes. */
export function rgbTensor(img: Rgb): Tensor {
  return { data: img.data, shape: [img.height, img.width, 3], dtype: 'uint8' };
}

/**
 * Decodes any ImageInput to 8-bit RGB the way PIL's `Image.open(...).convert("RGB")` reads it:
 * alpha dropped (not composited), grey replicated, embedded ICC profiles and EXIF orientation
 * ignored. Every failure is a FastComposerError 'ERR_IMAGE' naming `label`.
 */
export async function decodeRgb(input: ImageInput, label: string, options: DecodeOptions = {}): Promise<Rgb> {
  const limit = checkSize(options.limitInputPixels ?? MAX_INPUT_PIXELS, 'limitInputPixels');
  if (isRaw(input)) return rawToRgb(input, label, limit);
  let source: string | Buffer;
  if (typeof input === 'string') {
    source = input;
    await checkImageFile(input, label);
  } else if (isBytes(input)) {
    if (input.length === 0) throw imageError(label, 'the image buffer is empty');
    source = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  } else {
    throw invalidArgument('a file path, an encoded image Buffer or { data, width, height, channels }', label, input);
  }
  try {
    // failOn 'error': truncated or corrupt pixel data aborts, benign warnings (PIL also ignores
    // them) do not. ignoreIcc: PIL hands over the stored values, untouched by any profile.
    const sharp = await loadSharp();
    const { data, info } = await sharp(source, { failOn: 'error', limitInputPixels: limit, ignoreIcc: true })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data, width: info.width, height: info.height };
  } catch (err) {
    if (err instanceof FastComposerError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(msg)) {
      throw imageError(label, `the image has more than ${limit} pixels (limitInputPixels; a decompression bomb?)`, err);
    }
    throw imageError(label, `cannot decode the image: ${msg.trim()}`, err);
  }
}

/** A picture file must exist, be a file and not be empty; otherwise ERR_IMAGE naming `label`. */
async function checkImageFile(path: string, label: string): Promise<void> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw imageError(label, `cannot read ${JSON.stringify(path)} (${err.code ?? err.message})`, err);
  });
  if (!st.isFile()) throw imageError(label, `${JSON.stringify(path)} is not a file`);
  if (st.size === 0) throw imageError(label, `${JSON.stringify(path)} is empty`);
}

/** A picture file's bytes, with the checks and errors of decoding it from its path (the job queue
 * carries pictures as bytes: a worker on another host cannot read the caller's files). */
export async function readImageFile(path: string, label: string): Promise<Buffer> {
  await checkImageFile(path, label);
  return readFile(path).catch((err: NodeJS.ErrnoException) => {
    throw imageError(label, `cannot read ${JSON.stringify(path)} (${err.code ?? err.message})`, err);
  });
}

/**
 * A region mask for localized attention at the output size, row-major, 1 inside (white) ... 0
 * outside (black); grey levels are kept. The picture is stretched to width x height with the same
 * antialiased bilinear filter as the subjects; the caller area-averages it to the latent grid.
 */
export async function loadRegionMask(
  input: ImageInput,
  width: number,
  height: number,
  options: DecodeOptions & { label?: string } = {},
): Promise<Float32Array> {
  checkSize(width, 'width');
  checkSize(height, 'height');
  const img = await decodeRgb(input, options.label ?? 'regionMask', options);
  const grey = new Float32Array(img.width * img.height);
  for (let i = 0; i < grey.length; i++) grey[i] = luma(img.data, i * 3) / 255;
  const out = resizeAntialiased(grey, { width: img.width, height: img.height, channels: 1 }, width, height);
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, Math.max(0, out[i]!));
  return out;
}

/** A box in pixels of the output image (fractional edges allowed). */
export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** The box as a width x height mask: each pixel holds the fraction of it the box covers. */
export function boxMask(box: Box, width: number, height: number): Float32Array {
  checkSize(width, 'width');
  checkSize(height, 'height');
  for (const k of ['left', 'top', 'width', 'height'] as const) {
    const v = box?.[k];
    if (!isFiniteNumber(v) || ((k === 'width' || k === 'height') && v <= 0)) {
      throw invalidArgument(k === 'width' || k === 'height' ? 'a positive number' : 'a finite number', `box.${k}`, v);
    }
  }
  // Coverage per pixel is separable: (overlap along x) * (overlap along y).
  const cover = (n: number, lo: number, hi: number): Float32Array => {
    const c = new Float32Array(n);
    for (let i = 0; i < n; i++) c[i] = Math.max(0, Math.min(i + 1, hi) - Math.max(i, lo));
    return c;
  };
  const cx = cover(width, box.left, box.left + box.width);
  const cy = cover(height, box.top, box.top + box.height);
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[y * width + x] = cy[y]! * cx[x]!;
  return out;
}

/** Where `src` sits: HWC. */
export interface Layout {
  width: number;
  height: number;
  channels: number;
}

/**
 * torch's CPU `_upsample_bilinear2d_aa` for float32 (F.interpolate bilinear, align_corners=False,
 * antialias=True), on HWC data: one pass along x then one along y, each skipped when that side
 * keeps its size (so equal sizes copy bit-exactly). A triangle filter whose support grows with
 * the downscale factor, renormalised at the borders. float32 arithmetic is emulated with
 * Math.fround, and `acc += t * w` as one fused multiply-add, as torch's AVX2/AVX512 builds
 * compile it. Used for region masks and heat maps (subject pictures use torch's own kernel).
 */
export function resizeAntialiased(src: Uint8Array | Float32Array, layout: Layout, outWidth: number, outHeight: number): Float32Array {
  const { width, height, channels: ch } = layout;
  // Pass 1 (x): each row at width outWidth.
  const tw = outWidth;
  const tmp = new Float32Array(height * tw * ch);
  const ax = outWidth !== width ? aaAxis(width, outWidth) : undefined;
  for (let y = 0; y < height; y++) {
    const row = y * width * ch;
    const orow = y * tw * ch;
    if (!ax) {
      for (let i = 0; i < width * ch; i++) tmp[orow + i] = src[row + i]!;
      continue;
    }
    for (let x = 0; x < outWidth; x++) {
      const n = ax.xsize[x]!;
      const s0 = row + ax.xmin[x]! * ch;
      const wo = x * ax.stride;
      for (let c = 0; c < ch; c++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc = fround(acc + src[s0 + j * ch + c]! * ax.w[wo + j]!);
        tmp[orow + x * ch + c] = acc;
      }
    }
  }
  if (outHeight === height) return tmp;
  // Pass 2 (y).
  const ay = aaAxis(height, outHeight);
  const rowLen = tw * ch;
  const dst = new Float32Array(rowLen * outHeight);
  for (let y = 0; y < outHeight; y++) {
    const y0 = ay.xmin[y]!;
    const n = ay.xsize[y]!;
    const wo = y * ay.stride;
    for (let i = 0; i < rowLen; i++) {
      let acc = 0;
      for (let j = 0; j < n; j++) acc = fround(acc + tmp[(y0 + j) * rowLen + i]! * ay.w[wo + j]!);
      dst[y * rowLen + i] = acc;
    }
  }
  return dst;
}

const fround = Math.fround;

interface Axis {
  xmin: Int32Array;
  xsize: Int32Array;
  w: Float32Array;
  stride: number;
}

/** `_compute_indices_min_size_weights_aa` for scalar_t = float, bilinear (interp_size 2), with
 * its float/double promotions: float*double and float+double are computed in double. */
function aaAxis(inSize: number, outSize: number): Axis {
  const scale = fround(inSize / outSize);
  const support = scale >= 1 ? fround(scale) : 1;
  const invscale = scale >= 1 ? fround(1 / scale) : 1;
  const stride = Math.ceil(support) * 2 + 1;
  const xmin = new Int32Array(outSize);
  const xsize = new Int32Array(outSize);
  const w = new Float32Array(outSize * stride);
  for (let i = 0; i < outSize; i++) {
    const center = fround(scale * (i + 0.5));
    const lo = Math.max(Math.trunc(fround(center - support) + 0.5), 0);
    const n = Math.min(Math.max(Math.min(Math.trunc(fround(center + support) + 0.5), inSize) - lo, 0), stride);
    let total = 0;
    for (let j = 0; j < n; j++) {
      const x = Math.abs(fround((fround(j + lo - center) + 0.5) * invscale));
      const wt = x < 1 ? fround(1 - x) : 0;
      w[i * stride + j] = wt;
      total = fround(total + wt);
    }
    if (total !== 0) for (let j = 0; j < n; j++) w[i * stride + j] = fround(w[i * stride + j]! / total);
    xmin[i] = lo;
    xsize[i] = n;
  }
  return { xmin, xsize, w, stride };
}

/** PIL's "L" conversion (ITU-R 601-2 luma, its integer rounding). */
function luma(d: Uint8Array, i: number): number {
  return (d[i]! * 19595 + d[i + 1]! * 38470 + d[i + 2]! * 7471 + 0x8000) >> 16;
}

/** Training cut each subject out of its photo by a hard segmentation (data.py SegmentProcessor:
 * `image[:, segmap != id] = background`), a select rather than a blend; black matches the pad. */
function applySubjectMask(img: Rgb, mask: Rgb, label: string): void {
  if (mask.width !== img.width || mask.height !== img.height) {
    throw imageError(`${label}.subjectMask`, `is ${mask.width}x${mask.height} but the image is ${img.width}x${img.height}`);
  }
  for (let p = 0, i = 0; p < img.width * img.height; p++, i += 3) {
    if (luma(mask.data, i) < MASK_THRESHOLD) img.data[i] = img.data[i + 1] = img.data[i + 2] = 0;
  }
}

function rawToRgb(raw: RawImage, label: string, limit: number): Rgb {
  const { data, width, height, channels } = raw;
  if (!isBytes(data)) throw imageError(label, 'raw data must be a Buffer or Uint8Array');
  if (!isInteger(width, 1) || !isInteger(height, 1)) {
    throw imageError(label, `raw width and height must be positive integers, got ${String(width)}x${String(height)}`);
  }
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw imageError(label, `raw channels must be 1, 3 or 4, got ${String(channels)}`);
  }
  if (width * height > limit) throw imageError(label, `the image has more than ${limit} pixels (limitInputPixels)`);
  const expected = width * height * channels;
  if (data.length !== expected) {
    throw imageError(label, `raw data has ${data.length} bytes but ${width}x${height}x${channels} needs ${expected}`);
  }
  // Always a copy: the subject mask writes into it, and the caller may reuse its buffer while
  // the job waits in the queue.
  if (channels === 3) return { data: Buffer.from(data), width, height };
  const out = Buffer.allocUnsafe(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const s = p * channels;
    out[p * 3] = data[s]!;
    out[p * 3 + 1] = data[channels === 1 ? s : s + 1]!;
    out[p * 3 + 2] = data[channels === 1 ? s : s + 2]!;
  }
  return { data: out, width, height };
}

function isRaw(v: unknown): v is RawImage {
  return isRecord(v) && 'data' in v && 'width' in v;
}

function isSpec(v: SubjectPicture): v is Pick<SubjectSpec, 'image' | 'subjectMask'> {
  return isRecord(v) && 'image' in v;
}

function checkSize(v: number, name: string): number {
  if (!isInteger(v, 1)) throw invalidArgument('a positive integer', name, v);
  return v;
}

function imageError(label: string, why: string, cause?: unknown): FastComposerError {
  return new FastComposerError('ERR_IMAGE', `${label}: ${why}`, cause === undefined ? undefined : { cause });
}
