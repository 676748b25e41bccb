// The pictures generate() and decode() return.
import { encodeImage, saveImage } from './images.js';
import type { Tensor } from './tensor.js';

/** An RGB image, rows top to bottom, with helpers to encode it. */
export class GeneratedImage {
  readonly channels = 3 as const;
  /** Set when generate() was asked for an encoded output (`output: 'png'` etc.). */
  encoded?: Buffer;

  constructor(
    readonly data: Buffer,
    readonly width: number,
    readonly height: number,
  ) {}

  toPng(): Promise<Buffer> {
    return encodeImage(this, 'png');
  }
  toJpeg(quality?: number): Promise<Buffer> {
    return encodeImage(this, 'jpeg', quality === undefined ? {} : { quality });
  }
  toWebp(quality?: number): Promise<Buffer> {
    return encodeImage(this, 'webp', quality === undefined ? {} : { quality });
  }
  /** Writes the image; the format follows the extension (.png, .jpg, .jpeg, .webp). */
  save(path: string): Promise<void> {
    return saveImage(this, path);
  }
}

/** [N,H,W,3] uint8 -> one GeneratedImage per picture, each a view into the same buffer. */
export function splitImages(images: Tensor): GeneratedImage[] {
  const [n, h, w] = images.shape as [number, number, number, number];
  const size = h * w * 3;
  return Array.from({ length: n }, (_, i) => new GeneratedImage(images.data.subarray(i * size, (i + 1) * size), w, h));
}
