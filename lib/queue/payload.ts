/**
 * A generate() call as BullMQ job data (JSON): the options checked and completed on the producer
 * (lib/options.ts), the seed fixed there so that a retried or recovered job draws the same noise,
 * and every picture as bytes (base64): a worker on another host cannot read the caller's files.
 * The worker reads the data back strictly (it may come from any client of the queue) and
 * FastComposer.generate() checks the options again against the model.
 */
import { FastComposerError, describe, invalidArgument } from '../errors.js';
import {
  type GenerateOptions,
  IMAGE_TOKENS,
  type ImageInput,
  type ImageToken,
  type NormalizedGenerateOptions,
  type Region,
  type SubjectSpec,
  validateGenerateOptions,
} from '../options.js';
import { readImageFile } from '../subjects.js';

export const JOB_FORMAT = 'fastcomposer-job';
export const JOB_VERSION = 1;

/** An encoded picture (PNG, JPEG, ...) or raw pixels, base64. */
export type WireImage = { encoded: string } | { raw: string; width: number; height: number; channels: 1 | 3 | 4 };

export interface WireSubject {
  image: WireImage;
  region?: Region;
  mask?: WireImage;
  subjectMask?: WireImage;
}

/** The scalar options, as the producer completed them. */
const WIRE_OPTION_KEYS = [
  'prompt',
  'negativePrompt',
  'steps',
  'guidanceScale',
  'alpha',
  'startMergeStep',
  'seed',
  'width',
  'height',
  'scheduler',
  'numImages',
  'attentionMaps',
  'regionStrength',
  'regionExclusive',
  'allowManySubjects',
  'output',
  'imageToken',
] as const;
export type WireOptions = Pick<GenerateOptions, (typeof WIRE_OPTION_KEYS)[number]>;

export interface JobData {
  format: typeof JOB_FORMAT;
  version: typeof JOB_VERSION;
  options: WireOptions;
  subjects: WireSubject[];
  /** float32 [numImages, 4, height / 8, width / 8], base64. */
  latents?: { data: string; shape: number[] };
  /** How long the worker keeps the result for the caller (ms). */
  resultTtl: number;
  /** Report each step (job.updateProgress): only when the caller listens, since every reader of
   * the queue's events receives every step of every job. */
  progress: boolean;
}

/** Producer side: checks the options (ERR_* before anything is queued) and builds the job data. */
export async function encodeJob(options: GenerateOptions, resultTtl: number): Promise<{ data: JobData; opts: NormalizedGenerateOptions }> {
  // The producer has no tokenizer: the subject count is the markers' count (the worker still checks the prompt).
  const opts = validateGenerateOptions(options, markerContext(options));
  const wire: WireOptions = {
    prompt: opts.prompt,
    negativePrompt: opts.negativePrompt,
    steps: opts.steps,
    guidanceScale: opts.guidanceScale,
    ...(opts.startMergeStep !== null ? { startMergeStep: opts.startMergeStep } : { alpha: opts.alpha! }),
    seed: opts.seed,
    width: opts.width,
    height: opts.height,
    scheduler: opts.scheduler,
    numImages: opts.numImages,
    attentionMaps: opts.attentionMaps,
    regionStrength: opts.regionStrength,
    regionExclusive: opts.regionExclusive,
    allowManySubjects: opts.allowManySubjects,
    output: opts.output,
    // Only when not the default, so that workers from before the img dialect still take the other jobs.
    ...(opts.imageToken !== IMAGE_TOKENS[0] ? { imageToken: opts.imageToken } : {}),
  };
  const subjects = await Promise.all(opts.subjects.map((s, i) => wireSubject(s, `subjects[${i}]`)));
  const data: JobData = {
    format: JOB_FORMAT,
    version: JOB_VERSION,
    options: wire,
    subjects,
    resultTtl,
    progress: opts.onStep !== undefined,
  };
  if (opts.latents) data.latents = { data: opts.latents.data.toString('base64'), shape: opts.latents.shape };
  return { data, opts };
}

/**
 * The subject count of generate() options without a tokenizer: the occurrences of the prompt's
 * marker (`imageToken`, default `<|image|>`), which the tokenizer matches in the raw text, so this
 * is its count on every prompt it accepts; and the marker, which the count's errors name. An
 * imageToken that is not a marker counts the default's; validateGenerateOptions() refuses it by name.
 */
export function markerContext(options: unknown): { subjectCount: number; imageToken: ImageToken } {
  const o = options as { prompt?: unknown; imageToken?: unknown } | null | undefined;
  const imageToken = (IMAGE_TOKENS as readonly unknown[]).includes(o?.imageToken) ? (o!.imageToken as ImageToken) : IMAGE_TOKENS[0];
  return { subjectCount: typeof o?.prompt === 'string' ? o.prompt.split(imageToken).length - 1 : 0, imageToken };
}

async function wireSubject(s: SubjectSpec, label: string): Promise<WireSubject> {
  // The labels of in-process decoding, so that a missing file reads the same either way.
  const out: WireSubject = { image: await wireImage(s.image, label) };
  if (s.region) out.region = s.region;
  if (s.mask !== undefined) out.mask = await wireImage(s.mask, `${label}.mask`);
  if (s.subjectMask !== undefined) out.subjectMask = await wireImage(s.subjectMask, `${label}.subjectMask`);
  return out;
}

async function wireImage(input: ImageInput, label: string): Promise<WireImage> {
  if (typeof input === 'string') return { encoded: (await readImageFile(input, label)).toString('base64') };
  if (input instanceof Uint8Array) return { encoded: bytes(input).toString('base64') };
  return { raw: bytes(input.data).toString('base64'), width: input.width, height: input.height, channels: input.channels };
}

function bytes(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Worker side: the job data back to generate() options (pictures as Buffers) and the result's lifetime. */
export function decodeJob(data: unknown): { options: GenerateOptions; resultTtl: number; progress: boolean } {
  const d = record(data, 'job data');
  if (d.format !== JOB_FORMAT) throw invalidArgument(JSON.stringify(JOB_FORMAT), 'job data format', d.format);
  if (d.version !== JOB_VERSION) {
    const got = describe(d.version);
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected job data version ${JOB_VERSION} (this worker's) but received ${got}`);
  }
  const wire = record(d.options, 'job data options');
  const unknown = Object.keys(wire).filter((k) => !(WIRE_OPTION_KEYS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Unknown job data options ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  }
  if (!Array.isArray(d.subjects)) throw invalidArgument('array', 'job data subjects', d.subjects);
  const subjects = d.subjects.map((s, i) => subjectFromWire(s, `subjects[${i}]`));
  const options: GenerateOptions = { ...(wire as WireOptions), subjects };
  if (d.latents !== undefined) {
    const l = record(d.latents, 'job data latents');
    options.latents = { data: base64(l.data, 'latents.data'), shape: l.shape as number[], dtype: 'float32' };
  }
  const resultTtl = d.resultTtl;
  if (typeof resultTtl !== 'number' || !Number.isInteger(resultTtl) || resultTtl < 1) {
    throw invalidArgument('positive integer', 'job data resultTtl', resultTtl);
  }
  if (typeof d.progress !== 'boolean') throw invalidArgument('boolean', 'job data progress', d.progress);
  return { options, resultTtl, progress: d.progress };
}

function subjectFromWire(v: unknown, label: string): SubjectSpec {
  const s = record(v, label);
  const spec: SubjectSpec = { image: imageFromWire(s.image, `${label}.image`) };
  // The region's numbers are checked by generate() with the other options.
  if (s.region !== undefined) spec.region = s.region as Region;
  if (s.mask !== undefined) spec.mask = imageFromWire(s.mask, `${label}.mask`);
  if (s.subjectMask !== undefined) spec.subjectMask = imageFromWire(s.subjectMask, `${label}.subjectMask`);
  return spec;
}

function imageFromWire(v: unknown, label: string): ImageInput {
  const w = record(v, label);
  if ('encoded' in w) return base64(w.encoded, `${label}.encoded`);
  // The sizes are checked by generate() against the bytes.
  if ('raw' in w) {
    return { data: base64(w.raw, `${label}.raw`), width: w.width as number, height: w.height as number, channels: w.channels as 1 | 3 | 4 };
  }
  throw invalidArgument('{encoded} or {raw, width, height, channels}', label, v);
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function base64(v: unknown, label: string): Buffer {
  if (typeof v !== 'string' || v.length % 4 !== 0 || !BASE64.test(v)) throw invalidArgument('base64 string', label, v);
  return Buffer.from(v, 'base64');
}

function record(v: unknown, label: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgument('object', label, v);
  return v as Record<string, unknown>;
}
