/**
 * Reads and checks a model directory written by the exporter (format in docs/MODEL_FORMAT.md):
 * the manifest's format and version, that every file it names is there, and that each has the
 * size (and on request the SHA-256) model.json records for it (model-files.ts).
 */
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';

import { FastComposerError, modelError } from './errors.js';
import { isNonEmptyString, isPositive } from './is.js';
import { checkFile, type FileRecords, parseFileRecords } from './model-files.js';
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

/** What model.json names, before any file is read. */
export interface ModelManifestFiles {
  dir: string;
  manifestPath: string;
  manifest: ModelManifest;
  modulePaths: Record<ModuleName, string>;
  tokenizerPath: string;
  schedulerPath: string;
  /** model.json's `files` (sizes and SHA-256 by file name); undefined for a directory exported before they were recorded. */
  files: FileRecords | undefined;
}

export interface ModelDir extends ModelManifestFiles {
  schedulerConfig: Record<string, unknown>;
  /** Things the caller should know, e.g. that model.json records no file sizes or hashes. */
  warnings: string[];
}

export interface ReadModelDirOptions {
  /** Also check every file's SHA-256 against model.json (reads every byte). Sizes are always checked. */
  verifyHashes?: boolean;
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

/** Reads and checks model.json (a folder, or the name of a pulled model: hub/registry.ts); the files it names must exist (nothing else of them is read). */
export async function readManifest(dirInput: string): Promise<ModelManifestFiles> {
  if (!isNonEmptyString(dirInput)) {
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
  const files = parseFileRecords(raw.files, manifestPath);
  const local = (name: unknown, what: string): string => {
    if (!isNonEmptyString(name) || isAbsolute(name) || name.includes('..')) {
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
  return { dir, manifestPath, manifest: raw as ModelManifest, modulePaths, tokenizerPath, schedulerPath, files };
}

/** The files a load reads: the five modules, the tokenizer and the scheduler config. */
export function usedFiles(model: ModelManifestFiles): string[] {
  return [...MODULE_NAMES.map((name) => model.modulePaths[name]), model.tokenizerPath, model.schedulerPath];
}

export function fileName(model: ModelManifestFiles, path: string): string {
  return path.slice(model.dir.length + 1);
}

/**
 * Reads and checks a model directory for a load: model.json, each file's size against it (with
 * `verifyHashes`, each file's SHA-256), then the scheduler config. A directory whose model.json
 * records no files (exported before they were) loads with a warning, unless hashes were asked for.
 */
export async function readModelDir(dirInput: string, options: ReadModelDirOptions = {}): Promise<ModelDir> {
  const model = await readManifest(dirInput);
  const warnings: string[] = [];
  if (model.files) {
    for (const path of usedFiles(model)) {
      const name = fileName(model, path);
      const record = model.files[name];
      if (!record) throw modelError(`${model.manifestPath} records no size and SHA-256 for ${name}; re-export the model`);
      await checkFile(path, record, options.verifyHashes === true);
    }
  } else if (options.verifyHashes) {
    throw modelError(
      `${model.manifestPath} records no file sizes or SHA-256 digests (exported by an older fastcomposer), so its files ` +
        'cannot be verified. Re-export the model to have them recorded.',
    );
  } else {
    warnings.push(
      `${model.manifestPath} records no file sizes or SHA-256 digests (exported by an older fastcomposer): its files ` +
        'are not checked against it. Re-export the model to have them recorded.',
    );
  }
  const schedulerConfig = (await readJson(model.schedulerPath, 'scheduler config')) as Record<string, unknown>;
  if (!schedulerConfig || typeof schedulerConfig !== 'object') throw modelError(`${model.schedulerPath} is not an object`);
  return { ...model, schedulerConfig, warnings };
}
