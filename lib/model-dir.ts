/**
 * Reads and checks a model directory written by the exporter (format in docs/MODEL_FORMAT.md):
 * the manifest's format and version, and that every file it names is there.
 */
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';

import { FastComposerError } from './errors.js';
import { resolveModel } from './hub/index.js';

export const MODEL_FORMAT = 'fastcomposer-model';
export const MODEL_FORMAT_VERSION = 1;

export const MODULE_NAMES = ['text_encoder', 'image_encoder', 'postfuse', 'unet', 'vae_decoder'] as const;
export type ModuleName = (typeof MODULE_NAMES)[number];

export interface ModelManifest {
  format: string;
  version: number;
  name?: string;
  imageToken: string;
  maxLength: number;
  textHiddenSize: number;
  objectEmbedSize?: number;
  latentChannels: number;
  vaeScaleFactor: number;
  latentScale: number;
  imageSize: number;
  modules: Record<ModuleName, { file: string }>;
  tokenizer: string;
  scheduler: string;
  [key: string]: unknown;
}

export interface ModelDir {
  dir: string;
  manifest: ModelManifest;
  modulePaths: Record<ModuleName, string>;
  tokenizerPath: string;
  schedulerConfig: Record<string, unknown>;
}

function modelError(message: string, cause?: unknown): FastComposerError {
  return new FastComposerError('ERR_MODEL', message, cause === undefined ? undefined : { cause });
}

async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw modelError(`Cannot read the ${what} ${file}: ${(cause as Error).message}`, cause);
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw modelError(`The ${what} ${file} is not valid JSON: ${(cause as Error).message}`, cause);
  }
}

async function requireFile(path: string, what: string): Promise<string> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw modelError(`The model directory lacks ${what}: ${path} does not exist`);
  }
  if (!info.isFile() || info.size === 0) throw modelError(`The model file ${path} (${what}) is empty or not a file`);
  return path;
}

function isPositive(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

/** Reads a model folder, given by path or by the name of a pulled model (hub/registry.ts). */
export async function readModelDir(dirInput: string): Promise<ModelDir> {
  if (typeof dirInput !== 'string' || dirInput.length === 0) {
    throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected a model directory path or name but received ${String(dirInput)}`);
  }
  const dir = resolve(resolveModel(dirInput));
  const manifestPath = join(dir, 'model.json');
  const raw = (await readJson(manifestPath, 'model manifest')) as Partial<ModelManifest> | null;
  if (!raw || typeof raw !== 'object') throw modelError(`The model manifest ${manifestPath} is not an object`);
  if (raw.format !== MODEL_FORMAT) {
    throw modelError(`${manifestPath} is not a fastcomposer model manifest (format ${JSON.stringify(raw.format)})`);
  }
  if (raw.version !== MODEL_FORMAT_VERSION) {
    throw modelError(
      `${manifestPath} has format version ${JSON.stringify(raw.version)}; this fastcomposer reads version ` +
        `${MODEL_FORMAT_VERSION}. Re-export the model with this version's \`npx fastcomposer export\`.`,
    );
  }
  for (const key of ['latentScale', 'vaeScaleFactor', 'latentChannels', 'maxLength'] as const) {
    if (!isPositive(raw[key])) throw modelError(`${manifestPath}: ${key} must be a positive number`);
  }
  if (typeof raw.modules !== 'object' || raw.modules === null) throw modelError(`${manifestPath} lists no modules`);
  const local = (name: unknown, what: string): string => {
    if (typeof name !== 'string' || name.length === 0 || isAbsolute(name) || name.includes('..')) {
      throw modelError(`${manifestPath}: the file of ${what} must be a plain file name, got ${JSON.stringify(name)}`);
    }
    return join(dir, name);
  };
  const modulePaths = {} as Record<ModuleName, string>;
  for (const name of MODULE_NAMES) {
    const entry = raw.modules[name];
    if (!entry) throw modelError(`${manifestPath} lists no ${name} module`);
    modulePaths[name] = await requireFile(local(entry.file, name), `the ${name} module`);
  }
  const tokenizerPath = await requireFile(local(raw.tokenizer ?? 'tokenizer.json', 'the tokenizer'), 'the tokenizer');
  const schedulerPath = await requireFile(local(raw.scheduler ?? 'scheduler_config.json', 'the scheduler'), 'the scheduler config');
  const schedulerConfig = (await readJson(schedulerPath, 'scheduler config')) as Record<string, unknown>;
  if (!schedulerConfig || typeof schedulerConfig !== 'object') throw modelError(`${schedulerPath} is not an object`);
  return { dir, manifest: raw as ModelManifest, modulePaths, tokenizerPath, schedulerConfig };
}
