/**
 * A file from a plain URL (a mirror of the checkpoint, such as the one MMagic's config names)
 * into fastcomposer's cache, `downloads/<hash of the URL>/<file name>`, resumable like a hub file.
 * The server announces no hash, so the size it announces is checked, and a sha256 when the
 * caller gives one; the sha256 of what arrived is recorded next to the file.
 */
import { createHash } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidArgument } from '../errors.js';
import { integrityError } from './errors.js';
import { type TransferProgress, transfer } from './transfer.js';

export interface UrlDownload {
  file: string;
  size: number;
  sha256: string;
  /** Bytes fetched now (0 when the cache had the file). */
  downloaded: number;
}

interface Record {
  url: string;
  size: number;
  sha256: string;
}

interface Validators {
  etag?: string;
  lastModified?: string;
}

export function checkUrl(value: unknown, name: string): URL {
  let url: URL | undefined;
  try {
    url = new URL(String(value));
  } catch {
    url = undefined;
  }
  if (typeof value !== 'string' || !url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw invalidArgument('an http(s) URL', name, value);
  }
  return url;
}

/** The file name a URL's last path segment gives, reduced to safe characters. */
function fileName(url: URL): string {
  const last = decodeURIComponent(url.pathname.split('/').filter(Boolean).at(-1) ?? '');
  const safe = last.replace(/[^\w.-]/g, '_').replace(/^\.+/, '');
  return safe || 'download';
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export async function downloadUrl(
  urlText: string,
  options: { cacheDir: string; sha256?: string; onProgress?: (p: TransferProgress) => void; signal?: AbortSignal },
): Promise<UrlDownload> {
  const url = checkUrl(urlText, 'checkpointUrl');
  const want = options.sha256?.toLowerCase();
  if (want !== undefined && !/^[0-9a-f]{64}$/.test(want))
    throw invalidArgument('a hex sha256 (64 digits)', 'checkpointSha256', options.sha256);
  const folder = join(options.cacheDir, 'downloads', createHash('sha256').update(url.href).digest('hex').slice(0, 16));
  const file = join(folder, fileName(url));
  const recordPath = `${file}.json`;
  const validatorsPath = `${file}.incomplete.json`;

  const record = await readJson<Record>(recordPath);
  if (record && record.url === url.href && (want === undefined || record.sha256 === want)) {
    const size = await stat(file).then(
      (s) => s.size,
      () => -1,
    );
    if (size === record.size) return { file, size, sha256: record.sha256, downloaded: 0 };
  }
  await rm(recordPath, { force: true });

  // Resuming a URL is safe only if the file there is still the same one: If-Range asks the
  // server to send it whole again when its ETag (or date) changed.
  const validators = (await readJson<Validators>(validatorsPath)) ?? {};
  const ifRange = validators.etag && !validators.etag.startsWith('W/') ? validators.etag : validators.lastModified;
  const result = await transfer({
    url: url.href,
    dest: file,
    expected: want ? { sha256: want } : {},
    context: { file: fileName(url), url: url.href },
    ...(ifRange ? { ifRange } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onResponse: async (headers) => {
      const seen: Validators = {};
      const etag = headers.get('etag');
      const lastModified = headers.get('last-modified');
      if (etag) seen.etag = etag;
      if (lastModified) seen.lastModified = lastModified;
      await writeFile(validatorsPath, JSON.stringify(seen));
    },
  });
  await rm(validatorsPath, { force: true });
  if (result.size === 0) {
    await rm(file, { force: true });
    throw integrityError({ url: url.href }, 'the server sent an empty file');
  }
  await writeFile(recordPath, JSON.stringify({ url: url.href, size: result.size, sha256: result.sha256 } satisfies Record));
  return { file, size: result.size, sha256: result.sha256, downloaded: result.downloaded };
}
