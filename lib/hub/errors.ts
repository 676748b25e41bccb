/**
 * Download errors: a FastComposerError with a code, plus what was being fetched, so that a
 * caller can tell "log in" from "wrong name" from "try again" from "free some disk".
 */
import { FastComposerError, type FastComposerErrorCode } from '../errors.js';

export interface DownloadErrorDetails {
  /** `owner/name` of the hub repo, when the file came from the hub. */
  repo?: string;
  /** The file inside the repo, or the local file being written. */
  file?: string;
  url?: string;
  /** The HTTP status the server answered, when it answered. */
  status?: number;
}

export class DownloadError extends FastComposerError {
  override name = 'DownloadError';
  readonly repo?: string;
  readonly file?: string;
  readonly url?: string;
  readonly status?: number;

  constructor(code: FastComposerErrorCode, message: string, details: DownloadErrorDetails = {}, options?: { cause?: unknown }) {
    super(code, message, options);
    Object.assign(this, details);
  }
}

/** "mit-han-lab/fastcomposer, file pytorch_model.bin" or the URL: the thing an error is about. */
export function what(details: DownloadErrorDetails): string {
  if (details.repo) return details.file ? `${details.repo}, file ${details.file}` : details.repo;
  return details.url ?? details.file ?? 'the download';
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** The system or undici code behind a failed fetch (fetch wraps it as `TypeError: fetch failed`). */
export function causeCode(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') return e.code;
  }
  return undefined;
}

/** True for failures of the connection itself (refused, reset, DNS, timeouts), not of the server's answer. */
export function isNetworkFailure(error: unknown): boolean {
  if (error instanceof FastComposerError) return error.code === 'ERR_NETWORK';
  const code = causeCode(error);
  if (code && NETWORK_CODES.has(code)) return true;
  return error instanceof TypeError && /fetch failed|terminated|other side closed/i.test(error.message);
}

/** The innermost message of an error chain (fetch's own is only "fetch failed"). */
function rootMessage(error: unknown): string {
  let e = error as { message?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e?.cause && typeof e.cause === 'object' && depth < 5; depth++) e = e.cause;
  return typeof e?.message === 'string' && e.message ? e.message : String(error);
}

export function networkError(details: DownloadErrorDetails, cause: unknown, endpoint?: string): DownloadError {
  const reason = causeCode(cause) ?? rootMessage(cause);
  const hint = endpoint
    ? ` Check the connection to ${endpoint} (HF_ENDPOINT sets another server, HF_HUB_OFFLINE=1 uses only the cache).`
    : '';
  return new DownloadError('ERR_NETWORK', `Cannot download ${what(details)}: ${reason}.${hint}`, details, { cause });
}

export function diskFullError(details: DownloadErrorDetails, folder: string, needed?: number, cause?: unknown): DownloadError {
  const size = needed === undefined ? '' : ` (${formatBytes(needed)} more needed)`;
  return new DownloadError(
    'ERR_DISK_FULL',
    `No space left in ${folder} for ${what(details)}${size}; free some space and run the same command again (the download resumes), or point HF_HUB_CACHE / FASTCOMPOSER_CACHE at a larger disk`,
    details,
    cause === undefined ? undefined : { cause },
  );
}

export function integrityError(details: DownloadErrorDetails, problem: string): DownloadError {
  return new DownloadError(
    'ERR_DOWNLOAD_INTEGRITY',
    `${what(details)}: ${problem}; the partial file was deleted, run the same command again to download it afresh`,
    details,
  );
}

/** Maps a write failure: no space is ERR_DISK_FULL, anything else stays what it was. */
export function writeError(details: DownloadErrorDetails, folder: string, cause: unknown): unknown {
  const code = causeCode(cause);
  if (code === 'ENOSPC' || code === 'EDQUOT') return diskFullError(details, folder, undefined, cause);
  return cause;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}
