/**
 * Named models: an export in `<models cache>/<name>` (see settings.ts) is loaded by its name,
 * `FastComposer.load('fastcomposer')` or `--model fastcomposer`. A folder that holds a model.json
 * always wins over a name, so existing paths keep working.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { FastComposerError, invalidArgument } from '../errors.js';
import { DEFAULT_MODEL_NAME } from './release.js';
import { modelsDir } from './settings.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isModelName(value: string): boolean {
  return NAME.test(value) && !value.includes('..');
}

export function checkModelName(value: unknown, name = 'name'): string {
  if (typeof value !== 'string' || !isModelName(value)) {
    throw invalidArgument('a model name (letters, digits, ".", "_" or "-", at most 64)', name, value);
  }
  return value;
}

/** `<models cache>/<name>` (the folder need not exist). */
export function modelDirFor(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(modelsDir(env), checkModelName(name));
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * A model folder for a path or a name: a folder with a model.json as given; else a name with a
 * pulled model in the cache, that folder. A name with neither is ERR_MODEL saying how to pull it;
 * anything else comes back unchanged, for the model folder checks to report on.
 */
export function resolveModel(nameOrDir: string, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof nameOrDir !== 'string' || nameOrDir === '') return nameOrDir;
  if (existsSync(join(nameOrDir, 'model.json')) || !isModelName(nameOrDir)) return nameOrDir;
  const cached = join(modelsDir(env), nameOrDir);
  if (existsSync(join(cached, 'model.json'))) return cached;
  if (isDir(nameOrDir)) return nameOrDir; // a folder without a model: let the folder checks say what lacks
  const how = nameOrDir === DEFAULT_MODEL_NAME ? 'npx fastcomposer pull' : `npx fastcomposer pull --name ${nameOrDir}`;
  throw new FastComposerError(
    'ERR_MODEL',
    `No model named "${nameOrDir}" in ${modelsDir(env)} (and no folder of that name here); get it with \`${how}\`, or pass a model folder`,
  );
}

export interface ModelSummary {
  name: string;
  dir: string;
  /** Bytes of the folder's files. */
  size: number;
  /** Where its files came from, as model.json records (hf://repo@commit[/file], a URL, a preset). */
  source: Record<string, unknown>;
  weightsDtype: string | undefined;
  /** When the export finished (model.json's time). */
  modified: Date;
}

/** The exported models in the models cache, by name. */
export async function listModels(env: NodeJS.ProcessEnv = process.env): Promise<ModelSummary[]> {
  const root = modelsDir(env);
  let names: string[];
  try {
    names = (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory() && isModelName(d.name)).map((d) => d.name);
  } catch {
    return [];
  }
  const out: ModelSummary[] = [];
  for (const name of names.sort()) {
    const dir = join(root, name);
    let manifest: { source?: unknown; weightsDtype?: unknown };
    let modified: Date;
    try {
      manifest = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as typeof manifest;
      modified = (await stat(join(dir, 'model.json'))).mtime;
    } catch {
      continue; // an export under way, or not a model
    }
    let size = 0;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.isFile()) size += (await stat(join(dir, entry.name))).size;
    }
    out.push({
      name,
      dir,
      size,
      source: manifest.source && typeof manifest.source === 'object' ? (manifest.source as Record<string, unknown>) : {},
      weightsDtype: typeof manifest.weightsDtype === 'string' ? manifest.weightsDtype : undefined,
      modified,
    });
  }
  return out;
}
