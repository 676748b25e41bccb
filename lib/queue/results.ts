/**
 * Where a job's result lives between the worker and its caller. The pixels, latents and maps go
 * to one Redis hash per job (binary fields, no base64) with an expiry; the caller reads it once
 * and deletes it. BullMQ's return value carries only the small metadata below: it is written
 * into the job hash and into the queue's event stream (up to 10,000 events are kept), where
 * megabytes of pixels per job would multiply Redis' memory and every QueueEvents reader's traffic.
 */
import type { Redis } from 'ioredis';

import { GeneratedImage, type GenerateResult } from '../fastcomposer.js';
import type { OutputFormat } from '../options.js';
import type { Tensor } from '../tensor.js';
import { queueError } from './failures.js';

/** BullMQ's return value of a completed job (JSON). */
export interface ResultMeta {
  format: 'fastcomposer-result';
  version: 1;
  seed: number;
  warnings: string[];
  timings: GenerateResult['timings'];
  /** Each image's size; [N, H, W, 3] RGB in the hash's `images` field. */
  images: { width: number; height: number }[];
  output: OutputFormat;
  latentsShape: number[];
  attentionMapsShape?: number[];
  /** The worker that ran the job (its BullMQ name). */
  worker: string;
}

/** Worker side: writes the result (replacing a partial one of an earlier attempt) with its expiry. */
export async function storeResult(
  redis: Redis,
  key: string,
  result: GenerateResult,
  ttlMs: number,
  worker: string,
  output: OutputFormat,
): Promise<ResultMeta> {
  const fields: Record<string, Buffer> = {
    // The images are views into the one [N, H, W, 3] buffer the model returned.
    images: Buffer.concat(result.images.map((img) => img.data)),
    latents: result.latents.data,
  };
  result.images.forEach((img, i) => {
    if (img.encoded) fields[`encoded:${i}`] = img.encoded;
  });
  if (result.attentionMaps) fields.attentionMaps = result.attentionMaps.data;
  await redis.multi().del(key).hset(key, fields).pexpire(key, ttlMs).exec().then(execChecked);
  return {
    format: 'fastcomposer-result',
    version: 1,
    seed: result.seed,
    warnings: result.warnings,
    timings: result.timings,
    images: result.images.map((img) => ({ width: img.width, height: img.height })),
    output,
    latentsShape: result.latents.shape,
    ...(result.attentionMaps ? { attentionMapsShape: result.attentionMaps.shape } : {}),
    worker,
  };
}

/** ioredis reports a failed command inside MULTI in exec()'s answer, not by rejecting. */
function execChecked(replies: [Error | null, unknown][] | null): void {
  if (!replies) throw new Error('the MULTI transaction was discarded');
  const failed = replies.find(([error]) => error);
  if (failed) throw failed[0]!;
}

/** Producer side: reads the result once and deletes it. */
export async function takeResult(redis: Redis, key: string, meta: ResultMeta, jobId: string): Promise<Omit<GenerateResult, 'timings'>> {
  const [[readError, hash]] = (await redis.multi().hgetallBuffer(key).unlink(key).exec()) as [[Error | null, Record<string, Buffer>]];
  if (readError) throw readError;
  const images = hash.images;
  if (!images || !hash.latents) {
    throw queueError(`The result of job ${jobId} is gone from Redis (it expired before it was read, or Redis lost its data)`);
  }
  const size = meta.images.map((m) => m.width * m.height * 3);
  if (images.length !== size.reduce((a, b) => a + b, 0)) {
    throw queueError(`The result of job ${jobId} has ${images.length} bytes of images, not the ${size.join(' + ')} its metadata gives`);
  }
  let offset = 0;
  const out = meta.images.map((m, i) => {
    const img = new GeneratedImage(images.subarray(offset, offset + size[i]!), m.width, m.height);
    offset += size[i]!;
    const encoded = hash[`encoded:${i}`];
    if (encoded) img.encoded = encoded;
    return img;
  });
  return {
    images: out,
    latents: tensor(hash.latents, meta.latentsShape),
    ...(hash.attentionMaps && meta.attentionMapsShape ? { attentionMaps: tensor(hash.attentionMaps, meta.attentionMapsShape) } : {}),
    seed: meta.seed,
    warnings: meta.warnings,
  };
}

function tensor(data: Buffer, shape: number[]): Tensor {
  return { data, shape, dtype: 'float32' };
}

/** The return value as QueueEvents hands it over (parsed JSON), checked enough to be trusted. */
export function resultMeta(value: unknown, jobId: string): ResultMeta {
  const m = value as Partial<ResultMeta> | null;
  const valid = m && typeof m === 'object' && m.format === 'fastcomposer-result' && m.version === 1;
  if (!valid || !Array.isArray(m.images) || !Array.isArray(m.latentsShape)) {
    throw queueError(`Job ${jobId} completed without a fastcomposer result (was it run by another program?)`);
  }
  return m as ResultMeta;
}
