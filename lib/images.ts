/**
 * Output pictures: raw RGB from the pipeline -> PNG / JPEG / WebP (Buffer or file) with sharp,
 * and attention-map heat maps blended over a generated image.
 */
import { writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { loadSharp } from './sharp-loader.js';
import { FastComposerError, invalidArgument } from './errors.js';
import { isBytes, isFiniteNumber, isInteger, isRecord } from './is.js';
import { resizeAntialiased } from './subjects.js';

/** Pixels as the pipeline returns them: HWC, rows top to bottom, 8 bits per channel. */
export interface PixelImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}
export type ImageFormat = 'png' | 'jpeg' | 'webp';
export interface EncodeOptions {
  /** 1..100, JPEG and WebP only (sharp's default, 80, when left out). */
  quality?: number;
}

const EXTENSIONS: Readonly<Record<string, ImageFormat>> = {
  '.png': 'png',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.webp': 'webp',
};

export async function encodeImage(img: PixelImage, format: ImageFormat, options: EncodeOptions = {}): Promise<Buffer> {
  checkImage(img, 'image', [3, 4]);
  const { quality } = options;
  if (quality !== undefined && !isInteger(quality, 1, 100)) {
    throw invalidArgument('an integer from 1 to 100', 'quality', quality);
  }
  const sharp = await loadSharp();
  const s = sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } });
  switch (format) {
    case 'png':
      return s.png().toBuffer();
    case 'jpeg':
      return s.jpeg(quality === undefined ? {} : { quality }).toBuffer();
    case 'webp':
      return s.webp(quality === undefined ? {} : { quality }).toBuffer();
    default:
      throw invalidArgument('"png", "jpeg" or "webp"', 'format', format);
  }
}

/** The format a file name asks for: .png, .jpg/.jpeg, .webp (case-insensitive). */
export function formatFromPath(path: string): ImageFormat {
  const format = typeof path === 'string' ? EXTENSIONS[extname(path).toLowerCase()] : undefined;
  if (!format) throw invalidArgument('a path ending in .png, .jpg, .jpeg or .webp', 'path', path);
  return format;
}

export async function saveImage(img: PixelImage, path: string, options: EncodeOptions = {}): Promise<void> {
  await writeFile(path, await encodeImage(img, formatFromPath(path), options));
}

export interface HeatmapOptions {
  /** Weight of the colour map over the picture, 0..1. Default 0.5. */
  opacity?: number;
}

/**
 * An attention map (mapWidth x mapHeight, row-major) drawn over `image` as a PNG of the image's
 * size: min-max normalised to [0, 1] (a flat map is all 0), upsampled bilinearly (centres
 * aligned, as torch's align_corners=False; libvips' upsampler is offset by half a pixel), coloured
 * with matplotlib's inferno (perceptually uniform, readable in grey) and alpha-blended.
 */
export async function renderHeatmap(
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  image: PixelImage,
  options: HeatmapOptions = {},
): Promise<Buffer> {
  if (!isInteger(mapWidth, 1)) throw invalidArgument('a positive integer', 'mapWidth', mapWidth);
  if (!isInteger(mapHeight, 1)) throw invalidArgument('a positive integer', 'mapHeight', mapHeight);
  if (!(map instanceof Float32Array) || map.length !== mapWidth * mapHeight) {
    throw invalidArgument(`a Float32Array of ${mapWidth * mapHeight} values`, 'map', map);
  }
  checkImage(image, 'image', [3]);
  const opacity = options.opacity ?? 0.5;
  if (!isFiniteNumber(opacity, 0, 1)) throw invalidArgument('a number from 0 to 1', 'opacity', opacity);

  let lo = Infinity;
  let hi = -Infinity;
  for (const v of map) {
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  const norm = new Float32Array(map.length);
  if (hi > lo) for (let i = 0; i < map.length; i++) norm[i] = Number.isFinite(map[i]) ? (map[i]! - lo) / (hi - lo) : 0;

  const { width, height } = image;
  const up = resizeAntialiased(norm, { width: mapWidth, height: mapHeight, channels: 1 }, width, height);
  const lut = inferno();
  const out = Buffer.allocUnsafe(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const k = Math.round(Math.min(1, Math.max(0, up[p]!)) * 255) * 3;
    for (let c = 0; c < 3; c++) {
      out[p * 3 + c] = Math.round(image.data[p * 3 + c]! * (1 - opacity) + lut[k + c]! * opacity);
    }
  }
  const sharp = await loadSharp();
  return sharp(out, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

// matplotlib's inferno (CC0) at indices 0, 8, ..., 248, 255; linear in between stays within 2
// levels of the full 256-entry table.
const INFERNO_STOPS =
  '0000040403120b0724150b37210c4a2f0a5b3d09654a0c6b57106e64156e71196e7d1e6d8a226a972766a32c61b0315b' +
  'bc3754c73e4cd24644db503be45a31eb6628f1731df68013f98e09fb9d07fcac11fbbc21f9cb35f5db4cf2ea69f3f68afcffa4';
let infernoLut: Uint8Array | undefined;

function inferno(): Uint8Array {
  if (infernoLut) return infernoLut;
  const stops = Buffer.from(INFERNO_STOPS, 'hex');
  const at = (s: number): number => Math.min(s * 8, 255);
  const lut = new Uint8Array(256 * 3);
  for (let i = 0, s = 0; i < 256; i++) {
    while (at(s + 1) < i) s++;
    const t = (i - at(s)) / (at(s + 1) - at(s));
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(stops[s * 3 + c]! * (1 - t) + stops[(s + 1) * 3 + c]! * t);
  }
  return (infernoLut = lut);
}

function checkImage(img: PixelImage, name: string, channels: readonly number[]): void {
  const ok = isRecord(img) && isBytes(img.data) && isInteger(img.width, 1) && isInteger(img.height, 1) && channels.includes(img.channels);
  if (!ok) throw invalidArgument(`{ data: Uint8Array, width, height, channels: ${channels.join(' | ')} }`, name, img);
  const need = img.width * img.height * img.channels;
  if (img.data.length !== need) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `${name} has ${img.data.length} bytes but ${img.width}x${img.height}x${img.channels} needs ${need}`,
    );
  }
}
