/**
 * A finished generate() as the server keeps it: one PNG per image and, when asked, one heat-map PNG
 * per image and subject. The raw pixels and attention maps are dropped once these exist.
 */
import { FastComposer } from '../fastcomposer.js';
import { encodeImage } from '../images.js';
import type { BackendResult } from './backend.js';

export interface EncodedResult {
  images: Buffer[];
  /** heatmaps[image][subject]; empty without attention maps. */
  heatmaps: Buffer[][];
}

export async function encodeResult(result: BackendResult, subjects: number): Promise<EncodedResult> {
  const images: Buffer[] = [];
  const heatmaps: Buffer[][] = [];
  // One picture at a time: each await gives the event loop back between encodes.
  for (const image of result.images) images.push(await encodeImage(image, 'png'));
  if (result.attentionMaps && subjects > 0) {
    for (let n = 0; n < result.images.length; n++) {
      const maps: Buffer[] = [];
      for (let s = 0; s < subjects; s++) maps.push(await FastComposer.attentionHeatmap(result, s, n));
      heatmaps.push(maps);
    }
  }
  return { images, heatmaps };
}
