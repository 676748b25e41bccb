/**
 * One file over HTTP into place, resumably: bytes go to `<dest>.incomplete` and the file is
 * renamed to `dest` only once its size and hashes match what the server announced. A dropped
 * connection resumes with a Range request (a few times in a row, then ERR_NETWORK); an
 * interrupted process resumes from the partial file next time. The same `.incomplete` name is
 * what Python's huggingface_hub uses, so either tool resumes the other's partial download.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { AbortError, FastComposerError } from '../errors.js';
import { type DownloadErrorDetails, diskFullError, integrityError, isNetworkFailure, networkError, writeError } from './errors.js';
import { type HubContext, httpError, retryableStatus } from './http.js';

export interface Expected {
  /** Bytes; required for hub files, learnt from the response for plain URLs. */
  size?: number;
  /** Hex sha256 of the content (the hub's LFS oid). */
  sha256?: string;
  /** Hex git blob sha1 (the hub's oid, and ETag, of a file kept in git rather than LFS). */
  gitSha1?: string;
}

export interface TransferProgress {
  /** Bytes of the file in place so far (including a resumed part). */
  bytes: number;
  total: number | undefined;
  /** Bytes that were already there when this call started (resumed, not downloaded now). */
  resumedFrom: number;
}

export interface TransferOptions {
  url: string;
  dest: string;
  expected: Expected;
  headers?: Record<string, string>;
  context: HubContext;
  onProgress?: (progress: TransferProgress) => void;
  signal?: AbortSignal;
  /** Failed attempts in a row (no byte gained) before giving up. */
  attempts?: number;
  /** Milliseconds without a byte before an attempt is dropped and retried. */
  stallMs?: number;
  /** Sent as If-Range when resuming a plain URL (its ETag or Last-Modified), so a changed file restarts. */
  ifRange?: string;
  /** Called with each response's headers (a plain-URL download records its validators). */
  onResponse?: (headers: Headers) => void | Promise<void>;
}

export interface TransferResult {
  size: number;
  sha256: string;
  /** Bytes fetched over the network by this call. */
  downloaded: number;
}

/** A hash over a file's bytes, also as git hashes a blob (`blob <size>\0` first). */
class Digests {
  readonly sha256: Hash = createHash('sha256');
  readonly git: Hash | undefined;
  constructor(gitSize: number | undefined) {
    if (gitSize !== undefined) this.git = createHash('sha1').update(`blob ${gitSize}\0`);
  }
  update(chunk: Uint8Array): void {
    this.sha256.update(chunk);
    this.git?.update(chunk);
  }
}

class Restart extends Error {}

function parseContentRange(value: string | null): { start: number; total: number | undefined } | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[2] === '*' ? undefined : Number(m[2]) };
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function hashPrefix(path: string, digests: Digests, signal?: AbortSignal): Promise<void> {
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, ...(signal ? { signal } : {}) }))
    digests.update(chunk as Buffer);
}

async function checkFreeSpace(folder: string, needed: number, details: DownloadErrorDetails): Promise<void> {
  let free: number;
  try {
    const s = await statfs(folder);
    free = s.bavail * s.bsize;
  } catch {
    return; // no statfs here: the write itself will say
  }
  if (free < needed) throw diskFullError(details, folder, needed - free);
}

export async function transfer(options: TransferOptions): Promise<TransferResult> {
  const { url, dest, expected, context, signal } = options;
  const partial = `${dest}.incomplete`;
  const folder = dirname(dest);
  const details: DownloadErrorDetails = { ...(context.repo ? { repo: context.repo } : {}), file: context.file ?? dest, url };
  await mkdir(folder, { recursive: true });
  let total = expected.size;
  let offset = await sizeOf(partial);
  if (total !== undefined && offset > total) {
    await rm(partial, { force: true });
    offset = 0;
  }
  let digests = new Digests(expected.gitSha1 ? total : undefined);
  if (offset > 0) await hashPrefix(partial, digests, signal);
  const resumedFrom = offset;
  if (total !== undefined) await checkFreeSpace(folder, total - offset, details);

  const maxAttempts = options.attempts ?? 5;
  const stallMs = options.stallMs ?? 60_000;
  let failures = 0;
  let downloaded = 0;
  const restart = async (): Promise<void> => {
    await rm(partial, { force: true });
    offset = 0;
    digests = new Digests(expected.gitSha1 ? total : undefined);
  };

  while (total === undefined || offset < total) {
    if (signal?.aborted) throw new AbortError(signal.reason);
    const before = offset;
    try {
      if ((await attempt()) === 'complete') break;
    } catch (error) {
      if (signal?.aborted) throw new AbortError(signal.reason);
      const retryable =
        error instanceof Restart ||
        (error as { retryable?: boolean }).retryable === true ||
        isNetworkFailure(error) ||
        (error as Error)?.name === 'TimeoutError';
      if (!retryable) throw error;
      failures = offset > before ? 1 : failures + 1;
      if (failures >= maxAttempts) {
        if (error instanceof Restart) throw integrityError(details, error.message);
        throw error instanceof FastComposerError ? error : networkError(details, error, context.endpoint);
      }
      if (error instanceof Restart) continue;
      await sleep(Math.min(500 * 2 ** (failures - 1), 8000), undefined, signal ? { signal } : {}).catch(() => {
        throw new AbortError(signal?.reason);
      });
    }
  }

  if (total !== undefined && offset !== total) throw integrityError(details, `expected ${total} bytes, got ${offset}`);
  const sha256 = digests.sha256.digest('hex');
  if (expected.sha256 && sha256 !== expected.sha256.toLowerCase()) {
    await rm(partial, { force: true });
    throw integrityError(details, `sha256 ${sha256} differs from the announced ${expected.sha256}`);
  }
  if (expected.gitSha1 && digests.git) {
    const git = digests.git.digest('hex');
    if (git !== expected.gitSha1.toLowerCase()) {
      await rm(partial, { force: true });
      throw integrityError(details, `git hash ${git} differs from the announced ${expected.gitSha1}`);
    }
  }
  await rename(partial, dest);
  return { size: offset, sha256, downloaded };

  /** One request: appends what it receives; 'complete' when the server says there is nothing left. */
  async function attempt(): Promise<'complete' | 'more'> {
    const stall = new AbortController();
    let timer = setTimeout(() => stall.abort(new DOMException('no data received', 'TimeoutError')), stallMs);
    const poke = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => stall.abort(new DOMException('no data received', 'TimeoutError')), stallMs);
    };
    const requestSignal = signal ? AbortSignal.any([signal, stall.signal]) : stall.signal;
    try {
      const headers: Record<string, string> = { 'accept-encoding': 'identity', ...options.headers };
      if (offset > 0) {
        headers.range = `bytes=${offset}-`;
        if (options.ifRange) headers['if-range'] = options.ifRange;
      }
      const res = await fetch(url, { headers, signal: requestSignal });
      await options.onResponse?.(res.headers);
      if (res.status === 416 && offset > 0) {
        // Nothing past `offset`: complete if the server's size is ours, else the file changed.
        await res.body?.cancel();
        const served = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
        const servedSize = served ? Number(served[1]) : undefined;
        if (servedSize !== undefined && total !== undefined && servedSize !== total) {
          await rm(partial, { force: true });
          throw integrityError(details, `the server holds ${servedSize} bytes where ${total} were announced`);
        }
        if (servedSize === offset) {
          total = offset;
          return 'complete';
        }
        await restart();
        throw new Restart('the server refused to resume the partial file');
      }
      if (!res.ok) {
        const error = await httpError(res, { ...context, url });
        if (retryableStatus(res.status)) Object.assign(error, { retryable: true });
        throw error;
      }
      let start = 0;
      let announced: number | undefined;
      if (res.status === 206) {
        const range = parseContentRange(res.headers.get('content-range'));
        if (!range || range.start !== offset) {
          // An answer for another range than asked: start over rather than guess.
          await res.body?.cancel();
          await restart();
          throw new Restart(`the server answered another range (${res.headers.get('content-range')}) than asked`);
        }
        start = range.start;
        announced = range.total;
      } else {
        const length = res.headers.get('content-length');
        announced = length !== null && !res.headers.get('content-encoding') ? Number(length) : undefined;
        if (offset > 0) await restart(); // the server sent the whole file again
      }
      if (announced !== undefined && total !== undefined && announced !== total) {
        await res.body?.cancel();
        await rm(partial, { force: true });
        throw integrityError(details, `the server sends ${announced} bytes where ${total} were announced`);
      }
      total ??= announced;
      if (!res.body) throw Object.assign(new Error('empty response body'), { retryable: true });
      const fh = await open(partial, start === 0 ? 'w' : 'a');
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          poke();
          if (total !== undefined && offset + chunk.length > total) {
            throw integrityError(details, `the server sent more than the announced ${total} bytes`);
          }
          try {
            await fh.write(chunk);
          } catch (error) {
            throw writeError(details, folder, error);
          }
          digests.update(chunk);
          offset += chunk.length;
          downloaded += chunk.length;
          options.onProgress?.({ bytes: offset, total, resumedFrom });
        }
        await fh.datasync();
      } catch (error) {
        if ((error as { code?: string }).code === 'ERR_DOWNLOAD_INTEGRITY') await rm(partial, { force: true });
        throw error;
      } finally {
        await fh.close();
      }
      if (total === undefined) {
        total = offset; // no announced size: the end of the body is the end of the file
        return 'complete';
      }
      if (offset < total) throw Object.assign(new Error(`the connection closed after ${offset} of ${total} bytes`), { retryable: true });
      return 'complete';
    } finally {
      clearTimeout(timer);
    }
  }
}
