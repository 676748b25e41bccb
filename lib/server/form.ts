/**
 * POST /api/generate's multipart/form-data body to generate() options, checked before the job is
 * queued: text fields become numbers and booleans, `subject` files the subjects (with their
 * `region` fields, in order), then the library's own validateGenerateOptions() and a full decode of
 * every subject picture. A bad request is refused here, at once, with the library's error.
 */
import type { FastifyRequest } from 'fastify';

import { FastComposerError, invalidArgument } from '../errors.js';
import { type GenerateOptions, type Region, type SubjectInput, validateGenerateOptions } from '../options.js';
import { markerContext } from '../queue/payload.js';
import { decodeSubjects } from '../subjects.js';
import { ApiError } from './errors.js';
import type { NewJob } from './job-store.js';
import type { ServerLimits } from './limits.js';

const NUMBER_FIELDS = ['steps', 'guidanceScale', 'alpha', 'seed', 'width', 'height', 'numImages', 'regionStrength'] as const;
const BOOLEAN_FIELDS = ['attentionMaps', 'regionExclusive'] as const;
const TEXT_FIELDS = ['prompt', 'negativePrompt', 'scheduler', 'imageToken'] as const;
export const FORM_FIELDS = [...TEXT_FIELDS, ...NUMBER_FIELDS, ...BOOLEAN_FIELDS, 'region', 'subject'] as const;

interface RawForm {
  fields: Map<string, string>;
  regions: string[];
  subjects: Buffer[];
}

/** Reads, converts and checks the form; throws an ApiError (400, 413) or a FastComposerError (400). */
export async function readGenerateForm(request: FastifyRequest, limits: ServerLimits): Promise<NewJob> {
  const form = await readParts(request, limits);
  const options = toOptions(form);
  // The subject count is the number of the chosen marker (imageToken: <|image|> or img) in the
  // prompt: the tokenizer's count whenever the prompt is usable (a marker it cannot use fails the
  // job with ERR_PROMPT). The queue's producer counts the same way.
  const checked = validateGenerateOptions(options, markerContext(options));
  await decodeSubjects(form.subjects, { limitInputPixels: limits.maxSubjectPixels });
  return {
    options: { ...options, seed: checked.seed },
    steps: checked.steps,
    subjects: checked.subjects.length,
    numImages: checked.numImages,
  };
}

async function readParts(request: FastifyRequest, limits: ServerLimits): Promise<RawForm> {
  if (!request.isMultipart()) {
    const type = request.headers['content-type'];
    throw new ApiError(
      400,
      'ERR_INVALID_ARGUMENT',
      `Expected a multipart/form-data body but received ${type ? JSON.stringify(type) : 'none'}`,
    );
  }
  const form: RawForm = { fields: new Map(), regions: [], subjects: [] };
  let total = 0;
  const count = (bytes: number): void => {
    total += bytes;
    if (total > limits.maxRequestBytes) throw tooLarge(`The request is larger than ${limits.maxRequestBytes} bytes`);
  };
  try {
    const parts = request.parts({
      limits: { fileSize: limits.maxFileBytes, files: limits.maxSubjects, fieldSize: limits.maxFieldBytes, fields: 64, parts: 64 },
    });
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== 'subject') throw unknownField(part.fieldname, 'file');
        const data = await part.toBuffer();
        count(data.length);
        form.subjects.push(data);
        continue;
      }
      const name = part.fieldname;
      const value = typeof part.value === 'string' ? part.value : String(part.value);
      if (part.valueTruncated) throw tooLarge(`The field ${name} is longer than ${limits.maxFieldBytes} bytes`);
      count(Buffer.byteLength(value));
      if (name === 'subject') throw invalidArgument('a file part', 'subject', value);
      if (name === 'region') {
        form.regions.push(value);
      } else if ((FORM_FIELDS as readonly string[]).includes(name)) {
        if (form.fields.has(name)) throw new FastComposerError('ERR_INVALID_ARGUMENT', `The field ${name} was given more than once`);
        form.fields.set(name, value);
      } else {
        throw unknownField(name, 'field');
      }
    }
  } catch (error) {
    discardRest(request);
    throw multipartError(error, limits);
  }
  return form;
}

/**
 * A form refused part way leaves the rest of its body in the socket, piped into a parser nobody
 * reads: the connection would stall and the client's next request on it would wait until the
 * request timeout resets it. Read the rest and drop it, so the connection stays usable.
 */
function discardRest(request: FastifyRequest): void {
  const raw = request.raw;
  if (raw.complete) return;
  raw.unpipe();
  raw.resume();
}

function toOptions(form: RawForm): GenerateOptions {
  const options: Record<string, unknown> = {};
  for (const [name, value] of form.fields) {
    if ((NUMBER_FIELDS as readonly string[]).includes(name)) options[name] = numeric(value);
    else if ((BOOLEAN_FIELDS as readonly string[]).includes(name)) options[name] = bool(value);
    else options[name] = value;
  }
  if (form.regions.length > form.subjects.length) {
    throw new FastComposerError(
      'ERR_INVALID_ARGUMENT',
      `Expected at most one region field per subject file (${form.subjects.length}) but received ${form.regions.length}`,
    );
  }
  const subjects: SubjectInput[] = form.subjects.map((image, i) => {
    const region = form.regions[i] === undefined ? undefined : parseRegion(form.regions[i], i);
    return region ? { image, region } : image;
  });
  if (subjects.length > 0) options.subjects = subjects;
  return options as unknown as GenerateOptions;
}

// A text that is not a number stays a string, so that the library's error names it as received.
function numeric(value: string): number | string {
  const n = value.trim() === '' ? NaN : Number(value);
  return Number.isFinite(n) ? n : value;
}

function bool(value: string): boolean | string {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'on') return true;
  if (v === 'false' || v === '0' || v === 'off') return false;
  return value;
}

/** A region field: JSON {x, y, width, height} in output pixels, or empty (this subject has none). */
function parseRegion(value: string, index: number): Region | undefined {
  if (value.trim() === '' || value.trim() === 'null') return undefined;
  try {
    return JSON.parse(value) as Region; // its keys and ranges are checked by validateGenerateOptions
  } catch {
    throw invalidArgument('JSON {"x", "y", "width", "height"} or an empty value', `region ${index} (subjects[${index}].region)`, value);
  }
}

function tooLarge(message: string): ApiError {
  return new ApiError(413, 'ERR_UPLOAD_TOO_LARGE', message);
}

function unknownField(name: string, kind: 'file' | 'field'): FastComposerError {
  return new FastComposerError(
    'ERR_INVALID_ARGUMENT',
    `Unknown ${kind} ${JSON.stringify(name)}; expected ${kind === 'file' ? 'subject' : FORM_FIELDS.filter((f) => f !== 'subject').join(', ')}`,
  );
}

/** @fastify/multipart's and busboy's errors as the API's. */
function multipartError(error: unknown, limits: ServerLimits): unknown {
  if (error instanceof ApiError || error instanceof FastComposerError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  switch (code) {
    case 'FST_REQ_FILE_TOO_LARGE':
      return tooLarge(`A subject file is larger than ${limits.maxFileBytes} bytes`);
    case 'FST_FILES_LIMIT':
      return new ApiError(400, 'ERR_SUBJECT_COUNT', `Expected at most ${limits.maxSubjects} subject files`);
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return tooLarge('The request has too many parts');
    default: {
      const message = error instanceof Error ? error.message : String(error);
      return new ApiError(400, 'ERR_INVALID_ARGUMENT', `Malformed multipart/form-data body: ${message}`);
    }
  }
}
