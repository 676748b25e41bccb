/**
 * FastComposer.verify() and `fastcomposer info --verify`: a model directory checked without
 * loading it or running any of it. Every file against the size and SHA-256 model.json records,
 * every module's code against the operators a load allows (native/module_audit.h, read without
 * the weights), and one fingerprint for the whole folder: the SHA-256 of model.json, which holds
 * every other file's digest, to compare with the one its publisher gives.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { FastComposerError } from './errors.js';
import { fileName, MODULE_NAMES, type ModuleName, readManifest, usedFiles } from './model-dir.js';
import { type FileCheck, verifyFile } from './model-files.js';
import { loadNative } from './native.js';
import { emitLibtorchWarnings } from './warnings.js';

export interface ModuleAudit {
  module: ModuleName;
  file: string;
  /** The operators its code uses, when it passed. */
  operators?: string[];
  /** Why it was refused (or could not be read), when it did not. */
  error?: string;
}

export interface ModelVerification {
  dir: string;
  /** SHA-256 of model.json: with every file's digest inside it, a fingerprint of the whole folder. */
  manifestSha256: string;
  /** The files a load reads, then any other file model.json records. */
  files: FileCheck[];
  modules: ModuleAudit[];
  /** Every file recorded and matching, every module allowed. */
  ok: boolean;
}

export async function verifyModelDir(modelDir: string): Promise<ModelVerification> {
  const model = await readManifest(modelDir);
  const manifestSha256 = createHash('sha256')
    .update(await readFile(model.manifestPath))
    .digest('hex');
  const records = model.files ?? {};
  const names = usedFiles(model).map((path) => fileName(model, path));
  for (const name of Object.keys(records)) if (!names.includes(name)) names.push(name);
  const files: FileCheck[] = [];
  for (const name of names) files.push(await verifyFile(join(model.dir, name), name, records[name]));

  const { binding } = loadNative();
  const modules: ModuleAudit[] = [];
  for (const module of MODULE_NAMES) {
    const path = model.modulePaths[module];
    const file = fileName(model, path);
    try {
      modules.push({ module, file, operators: await binding.auditModule(path) });
    } catch (error) {
      const e = error as { code?: unknown; message?: unknown };
      if (e?.code !== 'ERR_MODEL') throw new FastComposerError('ERR_NATIVE', String(e?.message ?? error), { cause: error });
      modules.push({ module, file, error: String(e.message) });
    } finally {
      emitLibtorchWarnings(binding);
    }
  }
  const ok = files.every((f) => f.status === 'ok') && modules.every((m) => m.error === undefined);
  return { dir: model.dir, manifestSha256, files, modules, ok };
}
