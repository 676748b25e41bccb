/**
 * What the server needs from whatever makes the pictures: a generate() shaped like
 * FastComposer.generate(). A loaded FastComposer is one; a job queue whose workers hold the models
 * is another (it takes the same options and gives the same result). The server never touches a
 * model itself, so it runs the same in front of either.
 */
import type { GenerateOptions } from '../options.js';
import type { Tensor } from '../tensor.js';

/** An RGB picture as generate() returns it (GeneratedImage fits). */
export interface BackendImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

/** The part of generate()'s result the server uses. */
export interface BackendResult {
  images: BackendImage[];
  seed: number;
  warnings: string[];
  /** float32 [numImages, subjects, height / 8, width / 8] when attentionMaps was asked for. */
  attentionMaps?: Tensor;
}

export interface GenerateBackend {
  /** Must honour options.signal (abort = reject with code ERR_ABORTED) and report options.onStep. */
  generate(options: GenerateOptions): Promise<BackendResult>;
}

/** What /api/health says the backend runs. */
export interface BackendInfo {
  model: string;
  device: string;
  dtype: string;
  /** What runs the jobs: 'model' (a model in this process; the default) or 'queue' (workers behind a job queue). */
  backend?: 'model' | 'queue';
  /** With a queue backend: the queue's name. */
  queueName?: string;
}
