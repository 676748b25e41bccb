import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { FastComposerError } from '../lib/errors.js';
import { encodeImage, formatFromPath, renderHeatmap, saveImage, type PixelImage } from '../lib/images.js';

function gradient(width: number, height: number): PixelImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) data.set([(x * 255) / (width - 1), (y * 255) / (height - 1), 128], (y * width + x) * 3);
  return { data, width, height, channels: 3 };
}

async function decode(buf: Buffer) {
  return sharp(buf).raw().toBuffer({ resolveWithObject: true });
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e instanceof FastComposerError ? e.code : `not a FastComposerError: ${String(e)}`),
  );
}

describe('encodeImage / saveImage', () => {
  const img = gradient(64, 48);

  it('PNG round-trips losslessly', async () => {
    const png = await encodeImage(img, 'png');
    expect((await sharp(png).metadata()).format).toBe('png');
    const { data, info } = await decode(png);
    expect([info.width, info.height, info.channels]).toEqual([64, 48, 3]);
    expect(Buffer.compare(data, Buffer.from(img.data))).toBe(0);
  });

  it('JPEG and WebP honour quality', async () => {
    for (const format of ['jpeg', 'webp'] as const) {
      const lo = await encodeImage(img, format, { quality: 5 });
      const hi = await encodeImage(img, format, { quality: 95 });
      const meta = await sharp(hi).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual([format, 64, 48]);
      expect(lo.length).toBeLessThan(hi.length);
    }
  });

  it('saveImage picks the format from the extension', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fc-images-'));
    for (const [name, format] of [
      ['a.png', 'png'],
      ['b.JPG', 'jpeg'],
      ['c.jpeg', 'jpeg'],
      ['d.webp', 'webp'],
    ] as const) {
      await saveImage(img, join(dir, name));
      expect((await sharp(await readFile(join(dir, name))).metadata()).format).toBe(format);
    }
    expect(await code(saveImage(img, join(dir, 'e.gif')))).toBe('ERR_INVALID_ARGUMENT');
    expect(() => formatFromPath('noext')).toThrow(/\.png/);
  });

  it('rejects bad arguments with ERR_INVALID_ARGUMENT', async () => {
    expect(await code(encodeImage({ ...img, data: img.data.subarray(1) }, 'png'))).toBe('ERR_INVALID_ARGUMENT');
    expect(await code(encodeImage({ ...img, width: 0 }, 'png'))).toBe('ERR_INVALID_ARGUMENT');
    expect(await code(encodeImage(img, 'jpeg', { quality: 0 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await code(encodeImage(img, 'bmp' as 'png'))).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe('renderHeatmap', () => {
  const image = gradient(128, 96);

  it('is a PNG of the image size', async () => {
    const map = new Float32Array(16 * 12).map((_, i) => Math.sin(i));
    const png = await renderHeatmap(map, 16, 12, image);
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(['png', 128, 96, 3]);
  });

  it('opacity 0 leaves the image unchanged', async () => {
    const { data } = await decode(await renderHeatmap(new Float32Array(4).fill(1), 2, 2, image, { opacity: 0 }));
    expect(Buffer.compare(data, Buffer.from(image.data))).toBe(0);
  });

  it('the peak is inferno yellow, the rest inferno black, centred where the map says', async () => {
    const map = new Float32Array(8 * 8);
    map[2 * 8 + 5] = 3; // row 2, column 5: centre (5.5 * 16, 2.5 * 12) = (88, 30), between pixels 87|88 and 29|30
    const { data } = await decode(await renderHeatmap(map, 8, 8, image, { opacity: 1 }));
    const px = (x: number, y: number) => Array.from(data.subarray((y * 128 + x) * 3, (y * 128 + x) * 3 + 3));
    const peak = px(88, 30);
    for (const [x, y] of [
      [87, 29],
      [88, 29],
      [87, 30],
    ] as const)
      expect(px(x, y)).toEqual(peak);
    expect(peak[0]).toBeGreaterThan(240); // near the top of inferno (252, 255, 164)
    expect(px(0, 95)).toEqual([0, 0, 4]);
    expect(px(80, 30)).toEqual(px(95, 30)); // symmetric about the peak: centres aligned
  });

  it('a flat or NaN map draws the bottom colour', async () => {
    const { data } = await decode(await renderHeatmap(new Float32Array(4).fill(NaN), 2, 2, image, { opacity: 1 }));
    expect(Array.from(data.subarray(0, 3))).toEqual([0, 0, 4]);
  });

  it('rejects a map of the wrong length or a bad opacity', async () => {
    expect(await code(renderHeatmap(new Float32Array(5), 2, 2, image))).toBe('ERR_INVALID_ARGUMENT');
    expect(await code(renderHeatmap(new Float32Array(4), 2, 2, image, { opacity: 2 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await code(renderHeatmap(new Float32Array(4), 2, 2, { ...image, channels: 4 }))).toBe('ERR_INVALID_ARGUMENT');
  });
});
