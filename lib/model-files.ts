/**
 * The size and SHA-256 digest that model.json records for each file of a model directory
 * (`files`, written by the exporter; docs/MODEL_FORMAT.md), and the checks against them. Sizes
 * are checked at every load; digests read every byte (seconds for a full-size model), so load
 * checks them on request (`verifyHashes`), and `FastComposer.verify()` always.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';

import { modelError } from './errors.js';

export interface FileRecord {
  size: number;
  sha256: string;
}
/** By file name (a plain name inside the model directory). */
export type FileRecords = Record<string, FileRecord>;

/** One file of a model directory against its record. */
export interface FileCheck {
  file: string;
  /** `unrecorded`: model.json records nothing for it (or records no files at all). */
  status: 'ok' | 'missing' | 'size-mismatch' | 'hash-mismatch' | 'unrecorded';
  size?: number;
  sha256?: string;
  expectedSize?: number;
  expectedSha256?: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const CHUNK = 1 << 20;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A file name model.json may use: no folders, nothing outside the directory. */
export function isPlainFileName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && !/[/\\]/.test(name) && name !== '.' && name !== '..';
}

/** model.json's `files`, checked; undefined when the manifest has none (exported before they were recorded). */
export function parseFileRecords(raw: unknown, manifestPath: string): FileRecords | undefined {
  if (raw === undefined) return undefined;
  if (!isObject(raw)) throw modelError(`${manifestPath}: files must be an object of { size, sha256 } by file name`);
  for (const [name, record] of Object.entries(raw)) {
    if (!isPlainFileName(name)) throw modelError(`${manifestPath}: files names ${JSON.stringify(name)}, which is not a plain file name`);
    const ok =
      isObject(record) &&
      typeof record.size === 'number' &&
      Number.isSafeInteger(record.size) &&
      record.size >= 0 &&
      typeof record.sha256 === 'string' &&
      SHA256_HEX.test(record.sha256);
    if (!ok) throw modelError(`${manifestPath}: files.${name} must be { size: bytes, sha256: 64 lowercase hex digits }`);
  }
  return raw as FileRecords;
}

/** SHA-256 of a file (lowercase hex), read in 1 MiB chunks: the event loop runs between them. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const info = await stat(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/** Throws ERR_MODEL naming the file when its size (and with `hashes`, its digest) differs from the record. */
export async function checkFile(path: string, record: FileRecord, hashes: boolean): Promise<void> {
  const size = await sizeOf(path);
  if (size === undefined) throw modelError(`The model file ${path} does not exist or is not a file`);
  if (size !== record.size) {
    throw modelError(
      `The model file ${path} is ${size} bytes, but model.json records ${record.size}: it is damaged, truncated or ` +
        'not the file this model was exported with. Re-export or copy the model again.',
    );
  }
  if (!hashes) return;
  const sha256 = await sha256File(path);
  if (sha256 !== record.sha256) {
    throw modelError(
      `The model file ${path} has SHA-256 ${sha256}, but model.json records ${record.sha256}: it is damaged or ` +
        'not the file this model was exported with. Re-export or copy the model again.',
    );
  }
}

/** The full check of one file, as a report rather than an error. */
export async function verifyFile(path: string, file: string, record: FileRecord | undefined): Promise<FileCheck> {
  const size = await sizeOf(path);
  if (size === undefined)
    return { file, status: 'missing', ...(record ? { expectedSize: record.size, expectedSha256: record.sha256 } : {}) };
  const sha256 = await sha256File(path);
  if (!record) return { file, status: 'unrecorded', size, sha256 };
  const expected = { expectedSize: record.size, expectedSha256: record.sha256 };
  if (size !== record.size) return { file, status: 'size-mismatch', size, sha256, ...expected };
  if (sha256 !== record.sha256) return { file, status: 'hash-mismatch', size, sha256, ...expected };
  return { file, status: 'ok', size, sha256, ...expected };
}
