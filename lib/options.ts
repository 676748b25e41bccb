/**
 * Options of FastComposer.generate() and FastComposer.load(): the public types, their defaults,
 * and validation that checks every option before any work starts (sharp style: each failure is
 * a FastComposerError naming the option and the value received).
 */
import { getRandomValues } from 'node:crypto';
import { FastComposerError, describe, invalidArgument } from './errors.js';
import type { Tensor } from './tensor.js';

export const SCHEDULERS = ['pndm', 'ddim', 'euler', 'euler-ancestral', 'dpmpp-2m'] as const;
export type SchedulerName = (typeof SCHEDULERS)[number];
export const OUTPUT_FORMATS = ['raw', 'png', 'jpeg', 'webp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export const MODEL_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export type ModelDType = (typeof MODEL_DTYPES)[number];
export type DeviceSpec = 'cpu' | 'cuda' | `cuda:${number}` | 'auto';

export const DEFAULTS = {
  steps: 50,
  guidanceScale: 5,
  alpha: 0.7,
  width: 512,
  height: 512,
  scheduler: 'pndm' as SchedulerName,
  numImages: 1,
  regionStrength: 1,
  output: 'raw' as OutputFormat,
  device: 'auto' as DeviceSpec,
  dtype: 'float32' as ModelDType,
};

export const LIMITS = {
  maxSteps: 1000,
  maxGuidanceScale: 100,
  minSize: 64,
  maxSize: 2048,
  sizeMultiple: 8,
  maxImages: 16,
  /** More subjects than this need allowManySubjects (the model was trained with at most 4). */
  maxSubjects: 4,
  maxSeed: Number.MAX_SAFE_INTEGER,
};

/** Decoded pixels, row-major, interleaved channels. */
export interface RawImage {
  data: Buffer | Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}
/** A file path, an encoded image (PNG, JPEG, WebP, ...) in a Buffer or Uint8Array, or raw pixels. */
export type ImageInput = string | Uint8Array | RawImage;
/** A box in output pixels. */
export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}
export interface SubjectSpec {
  image: ImageInput;
  /** Where the subject should appear (output pixels); mutually exclusive with mask. */
  region?: Region;
  /** Where the subject should appear, as a mask in output space: white = inside. */
  mask?: ImageInput;
  /** Segmentation of the subject picture: white = subject; the rest is blanked to black before encoding. */
  subjectMask?: ImageInput;
}
export type SubjectInput = ImageInput | SubjectSpec;

export interface StepProgress {
  step: number;
  steps: number;
  timestep: number;
}

export interface GenerateOptions {
  prompt: string;
  subjects?: SubjectInput[];
  negativePrompt?: string;
  steps?: number;
  guidanceScale?: number;
  /** Share of the steps conditioned on the subjects: step i uses the text-only prompt while i <= (1 - alpha) * steps. */
  alpha?: number;
  /** Alternative to alpha: step i uses the text-only prompt while i <= startMergeStep. */
  startMergeStep?: number;
  seed?: number;
  width?: number;
  height?: number;
  scheduler?: SchedulerName;
  numImages?: number;
  /** float32 [numImages, 4, height / 8, width / 8]. */
  latents?: Tensor;
  onStep?: (progress: StepProgress) => void;
  signal?: AbortSignal;
  /** Return `attentionMaps` in the result: float32 [numImages, subjects, height / 8, width / 8], each map summing to 1. */
  attentionMaps?: boolean;
  /** How hard subject regions confine their subject's attention: 0 = off ... 1 = no attention outside the region (default). */
  regionStrength?: number;
  /** Also keep every subject's attention out of the other subjects' regions (default false). */
  regionExclusive?: boolean;
  allowManySubjects?: boolean;
  output?: OutputFormat;
}

export interface NormalizedGenerateOptions {
  prompt: string;
  subjects: SubjectSpec[];
  negativePrompt: string;
  steps: number;
  guidanceScale: number;
  /** null when startMergeStep was given. */
  alpha: number | null;
  startMergeStep: number | null;
  /** Step i (0-based) uses the text-only prompt while i <= textOnlyUntil, else the subject prompt. */
  textOnlyUntil: number;
  /** The seed used: the one given, or one drawn here. */
  seed: number;
  seedWasRandom: boolean;
  width: number;
  height: number;
  scheduler: SchedulerName;
  numImages: number;
  latents: Tensor | undefined;
  onStep: ((progress: StepProgress) => void) | undefined;
  signal: AbortSignal | undefined;
  attentionMaps: boolean;
  regionStrength: number;
  regionExclusive: boolean;
  allowManySubjects: boolean;
  output: OutputFormat;
}

export interface LoadOptions {
  device?: DeviceSpec;
  dtype?: ModelDType;
  /** CPU threads for this model's work (1..1024). Default: libtorch's (the machine's cores). */
  threads?: number;
}
export interface NormalizedLoadOptions {
  device: DeviceSpec;
  dtype: ModelDType;
  /** 0 = libtorch's default. */
  threads: number;
}

export interface GenerateContext {
  /** Number of `<|image|>` tokens in the prompt (PromptTokenizer.tokenize().subjectCount). */
  subjectCount: number;
  /** The model's latent channels (model.json latentChannels); 4 unless told. */
  latentChannels?: number;
}

const GENERATE_KEYS = [
  'prompt', 'subjects', 'negativePrompt', 'steps', 'guidanceScale', 'alpha', 'startMergeStep', 'seed', 'width', 'height',
  'scheduler', 'numImages', 'latents', 'onStep', 'signal', 'attentionMaps', 'regionStrength', 'regionExclusive', 'allowManySubjects',
  'output',
] as const;
const LOAD_KEYS = ['device', 'dtype', 'threads'] as const;
const SUBJECT_KEYS = ['image', 'region', 'mask', 'subjectMask'] as const;
const RAW_IMAGE_KEYS = ['data', 'width', 'height', 'channels'] as const;
const REGION_KEYS = ['x', 'y', 'width', 'height'] as const;

type Dict = Record<string, unknown>;

// Any object that is not an array or a byte buffer: class instances are fine, their own keys are checked.
function isRecord(v: unknown): v is Dict {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

export function rejectUnknownKeys(obj: Dict, allowed: readonly string[], name: string): void {
  const unknown = Object.keys(obj).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `Unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} in ${name}; expected only ${allowed.join(', ')}`,
    );
  }
}

export function integer(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidArgument(`integer between ${min} and ${max}`, name, v);
  }
  return v;
}

function finite(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw invalidArgument(`number between ${min} and ${max}`, name, v);
  }
  return v;
}

function boolean(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw invalidArgument('boolean', name, v);
  return v;
}

function oneOf<T extends string>(v: unknown, name: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw invalidArgument(`one of ${allowed.join(', ')}`, name, v);
  }
  return v as T;
}

function size(v: unknown, name: string): number {
  const { minSize, maxSize, sizeMultiple } = LIMITS;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < minSize || v > maxSize || v % sizeMultiple !== 0) {
    throw invalidArgument(`multiple of ${sizeMultiple} between ${minSize} and ${maxSize}`, name, v);
  }
  return v;
}

/** A uniform integer in [0, 2^53 - 1]. */
export function randomSeed(): number {
  const [hi, lo] = getRandomValues(new Uint32Array(2));
  return (hi & 0x1fffff) * 2 ** 32 + lo;
}

const IMAGE_EXPECTED = 'file path, encoded image Buffer or raw image {data, width, height, channels}';

function imageInput(v: unknown, name: string): ImageInput {
  if (typeof v === 'string') {
    if (v.length === 0) throw invalidArgument('non-empty file path', name, v);
    return v;
  }
  if (Buffer.isBuffer(v)) {
    if (v.length === 0) throw invalidArgument('non-empty encoded image Buffer', name, v);
    return v;
  }
  if (isRecord(v) && 'data' in v) return rawImage(v, name);
  throw invalidArgument(IMAGE_EXPECTED, name, v);
}

function rawImage(v: Dict, name: string): RawImage {
  rejectUnknownKeys(v, RAW_IMAGE_KEYS, name);
  const { data } = v;
  if (!(data instanceof Uint8Array)) throw invalidArgument('Buffer or Uint8Array', `${name}.data`, data);
  const width = integer(v.width, `${name}.width`, 1, 65535);
  const height = integer(v.height, `${name}.height`, 1, 65535);
  if (v.channels !== 1 && v.channels !== 3 && v.channels !== 4) throw invalidArgument('1, 3 or 4', `${name}.channels`, v.channels);
  const channels = v.channels;
  const expected = width * height * channels;
  if (data.byteLength !== expected) {
    throw invalidArgument(`${expected} bytes (${width} x ${height} x ${channels})`, `${name}.data`, describeBytes(data));
  }
  return { data, width, height, channels };
}

// describe() names a Uint8Array only as an object; say its size instead.
function describeBytes(data: Uint8Array): unknown {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function region(v: unknown, name: string, outWidth: number, outHeight: number): Region {
  if (!isRecord(v)) throw invalidArgument('object {x, y, width, height}', name, v);
  rejectUnknownKeys(v, REGION_KEYS, name);
  const x = integer(v.x, `${name}.x`, 0, outWidth - 1);
  const y = integer(v.y, `${name}.y`, 0, outHeight - 1);
  const width = integer(v.width, `${name}.width`, 1, outWidth);
  const height = integer(v.height, `${name}.height`, 1, outHeight);
  if (x + width > outWidth) {
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected x + width <= ${outWidth} (the output width) for ${name} but received x ${x} and width ${width}`);
  }
  if (y + height > outHeight) {
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected y + height <= ${outHeight} (the output height) for ${name} but received y ${y} and height ${height}`);
  }
  return { x, y, width, height };
}

function subject(v: unknown, name: string, outWidth: number, outHeight: number): SubjectSpec {
  if (!isRecord(v) || 'data' in v) return { image: imageInput(v, name) };
  if (!('image' in v)) throw invalidArgument(`${IMAGE_EXPECTED} or {image, region?, mask?, subjectMask?}`, name, v);
  rejectUnknownKeys(v, SUBJECT_KEYS, name);
  const spec: SubjectSpec = { image: imageInput(v.image, `${name}.image`) };
  if (v.region !== undefined && v.mask !== undefined) {
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected either region or mask for ${name} but received both`);
  }
  if (v.region !== undefined) spec.region = region(v.region, `${name}.region`, outWidth, outHeight);
  if (v.mask !== undefined) spec.mask = imageInput(v.mask, `${name}.mask`);
  if (v.subjectMask !== undefined) spec.subjectMask = imageInput(v.subjectMask, `${name}.subjectMask`);
  return spec;
}

function subjectCountError(message: string): FastComposerError {
  return new FastComposerError('ERR_SUBJECT_COUNT', message);
}

function subjects(v: unknown, ctx: GenerateContext, allowMany: boolean, outWidth: number, outHeight: number): SubjectSpec[] {
  const list = v === undefined ? [] : v;
  if (!Array.isArray(list)) throw invalidArgument('array of subjects', 'subjects', v);
  if (list.length !== ctx.subjectCount) {
    throw subjectCountError(
      `Expected ${ctx.subjectCount} subject${ctx.subjectCount === 1 ? '' : 's'} (one per <|image|> in the prompt) for subjects but received ${describe(list)}`,
    );
  }
  if (list.length > LIMITS.maxSubjects && !allowMany) {
    throw subjectCountError(
      `Expected at most ${LIMITS.maxSubjects} subjects (set allowManySubjects: true for more) for subjects but received ${describe(list)}`,
    );
  }
  return list.map((s, i) => subject(s, `subjects[${i}]`, outWidth, outHeight));
}

function latents(v: unknown, numImages: number, channels: number, width: number, height: number): Tensor {
  if (!isRecord(v)) throw invalidArgument('tensor {data, shape, dtype}', 'latents', v);
  rejectUnknownKeys(v, ['data', 'shape', 'dtype'], 'latents');
  if (v.dtype !== 'float32') throw invalidArgument('"float32"', 'latents.dtype', v.dtype);
  const want = [numImages, channels, height / 8, width / 8];
  const shape = v.shape;
  if (!Array.isArray(shape) || shape.length !== want.length || shape.some((d, i) => d !== want[i])) {
    const got = Array.isArray(shape) ? `[${shape.map((d) => String(d)).join(', ')}]` : describe(shape);
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected shape [${want.join(', ')}] for latents.shape but received ${got}`);
  }
  const bytes = want.reduce((a, b) => a * b, 4);
  if (!Buffer.isBuffer(v.data) || v.data.length !== bytes) {
    throw invalidArgument(`Buffer of ${bytes} bytes`, 'latents.data', v.data);
  }
  return { data: v.data, shape: [...want], dtype: 'float32' };
}

function abortSignal(v: unknown): AbortSignal {
  // Duck typing: signals from other realms or polyfills fail instanceof.
  const s = v as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown } | null;
  if (typeof s !== 'object' || s === null || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function' || typeof s.removeEventListener !== 'function') {
    throw invalidArgument('AbortSignal', 'signal', v);
  }
  return v as AbortSignal;
}

/** Checks generate() options and fills the defaults. */
export function validateGenerateOptions(opts: unknown, ctx: GenerateContext): NormalizedGenerateOptions {
  if (!isRecord(opts)) throw invalidArgument('object', 'options', opts);
  rejectUnknownKeys(opts, GENERATE_KEYS, 'generate() options');
  const o = opts as Partial<Record<(typeof GENERATE_KEYS)[number], unknown>>;

  if (typeof o.prompt !== 'string') throw invalidArgument('string', 'prompt', o.prompt);
  const negativePrompt = o.negativePrompt ?? '';
  if (typeof negativePrompt !== 'string') throw invalidArgument('string', 'negativePrompt', negativePrompt);

  const steps = o.steps === undefined ? DEFAULTS.steps : integer(o.steps, 'steps', 1, LIMITS.maxSteps);
  const guidanceScale = o.guidanceScale === undefined ? DEFAULTS.guidanceScale : finite(o.guidanceScale, 'guidanceScale', 0, LIMITS.maxGuidanceScale);
  if (o.alpha !== undefined && o.startMergeStep !== undefined) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `Expected either alpha or startMergeStep but received both (alpha ${describe(o.alpha)}, startMergeStep ${describe(o.startMergeStep)})`,
    );
  }
  const startMergeStep = o.startMergeStep === undefined ? null : integer(o.startMergeStep, 'startMergeStep', 0, Number.MAX_SAFE_INTEGER);
  const alpha = startMergeStep !== null ? null : o.alpha === undefined ? DEFAULTS.alpha : finite(o.alpha, 'alpha', 0, 1);
  // The original computes `(1 - alpha_) * num_inference_steps` in float64 and compares `i <=` it;
  // the same arithmetic here keeps the switch on the same step (e.g. 15.000000000000002 for 0.7 x 50).
  const textOnlyUntil = startMergeStep ?? (1 - alpha!) * steps;

  const seedWasRandom = o.seed === undefined;
  const seed = seedWasRandom ? randomSeed() : integer(o.seed, 'seed', 0, LIMITS.maxSeed);
  const width = o.width === undefined ? DEFAULTS.width : size(o.width, 'width');
  const height = o.height === undefined ? DEFAULTS.height : size(o.height, 'height');
  const scheduler = o.scheduler === undefined ? DEFAULTS.scheduler : oneOf(o.scheduler, 'scheduler', SCHEDULERS);
  const numImages = o.numImages === undefined ? DEFAULTS.numImages : integer(o.numImages, 'numImages', 1, LIMITS.maxImages);

  const latentChannels = ctx.latentChannels ?? 4;
  const lat = o.latents === undefined ? undefined : latents(o.latents, numImages, latentChannels, width, height);
  if (o.onStep !== undefined && typeof o.onStep !== 'function') throw invalidArgument('function', 'onStep', o.onStep);
  const signal = o.signal === undefined ? undefined : abortSignal(o.signal);
  const attentionMaps = o.attentionMaps === undefined ? false : boolean(o.attentionMaps, 'attentionMaps');
  const regionStrength = o.regionStrength === undefined ? DEFAULTS.regionStrength : finite(o.regionStrength, 'regionStrength', 0, 1);
  const regionExclusive = o.regionExclusive === undefined ? false : boolean(o.regionExclusive, 'regionExclusive');
  const allowManySubjects = o.allowManySubjects === undefined ? false : boolean(o.allowManySubjects, 'allowManySubjects');
  const output = o.output === undefined ? DEFAULTS.output : oneOf(o.output, 'output', OUTPUT_FORMATS);

  return {
    prompt: o.prompt,
    subjects: subjects(o.subjects, ctx, allowManySubjects, width, height),
    negativePrompt,
    steps,
    guidanceScale,
    alpha,
    startMergeStep,
    textOnlyUntil,
    seed,
    seedWasRandom,
    width,
    height,
    scheduler,
    numImages,
    latents: lat,
    onStep: o.onStep as NormalizedGenerateOptions['onStep'],
    signal,
    attentionMaps,
    regionStrength,
    regionExclusive,
    allowManySubjects,
    output,
  };
}

const DEVICE_PATTERN = /^(cpu|cuda|auto|cuda:(0|[1-9][0-9]{0,2}))$/;

/** Checks load() options and fills the defaults (device 'auto', dtype 'float32'). */
export function validateLoadOptions(opts: unknown): NormalizedLoadOptions {
  const o = opts === undefined ? {} : opts;
  if (!isRecord(o)) throw invalidArgument('object', 'options', opts);
  rejectUnknownKeys(o, LOAD_KEYS, 'load() options');
  let device = DEFAULTS.device;
  if (o.device !== undefined) {
    if (typeof o.device !== 'string' || !DEVICE_PATTERN.test(o.device)) throw invalidArgument("'cpu', 'cuda', 'cuda:N' or 'auto'", 'device', o.device);
    device = o.device as DeviceSpec;
  }
  const dtype = o.dtype === undefined ? DEFAULTS.dtype : oneOf(o.dtype, 'dtype', MODEL_DTYPES);
  let threads = 0;
  if (o.threads !== undefined) {
    if (typeof o.threads !== 'number' || !Number.isInteger(o.threads) || o.threads < 1 || o.threads > 1024) {
      throw invalidArgument('integer between 1 and 1024', 'threads', o.threads);
    }
    threads = o.threads;
  }
  return { device, dtype, threads };
}
