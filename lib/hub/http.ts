/**
 * HTTP answers to coded errors. The hub says why it refused in its `X-Error-Code` header
 * (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound), which @huggingface/hub's own errors
 * drop; so the fetch handed to it maps a refusal before the library sees it.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { DownloadError, type DownloadErrorDetails, causeCode, isNetworkFailure, networkError, what } from './errors.js';

export interface HubContext extends DownloadErrorDetails {
  revision?: string;
  /** Whether a token was sent (changes what a 401 means). */
  withToken?: boolean;
  endpoint?: string;
}

async function serverMessage(res: Response): Promise<string | undefined> {
  try {
    const text = (await res.text()).trim();
    if (!text) return undefined;
    try {
      const json = JSON.parse(text) as { error?: unknown; message?: unknown };
      const message = json.error ?? json.message;
      if (typeof message === 'string') return message;
    } catch {
      // not JSON: the text itself, if short
    }
    return text.length <= 200 ? text : undefined;
  } catch {
    return undefined;
  }
}

/** True for answers worth asking again: the server is busy or failing, not refusing. */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** The coded error for a refused request (status >= 400). Reads the body for the server's reason. */
export async function httpError(res: Response, context: HubContext): Promise<DownloadError> {
  const status = res.status;
  const errorCode = res.headers.get('x-error-code') ?? '';
  const reason = await serverMessage(res);
  const details: DownloadErrorDetails = { ...pick(context), url: context.url ?? res.url, status };
  const subject = what(details);
  const said = reason ? ` (${status}: ${reason})` : ` (${status})`;
  const tokenHint = context.withToken
    ? 'check that HF_TOKEN (or the saved login) is valid and can read this repository'
    : 'set HF_TOKEN to a token that can read it';
  if (errorCode === 'RepoNotFound') {
    return new DownloadError(
      'ERR_HUB_NOT_FOUND',
      `Repository ${context.repo ?? subject} was not found${said}; check its name, or if it is private, ${tokenHint}`,
      details,
    );
  }
  if (errorCode === 'RevisionNotFound') {
    return new DownloadError('ERR_HUB_NOT_FOUND', `${context.repo ?? subject} has no revision ${context.revision ?? '?'}${said}`, details);
  }
  if (errorCode === 'EntryNotFound' || (status === 404 && context.repo && context.file)) {
    return new DownloadError(
      'ERR_HUB_NOT_FOUND',
      `${context.repo ?? subject} has no file ${context.file ?? '?'} at revision ${context.revision ?? 'main'}${said}`,
      details,
    );
  }
  if (errorCode === 'GatedRepo') {
    return new DownloadError(
      'ERR_HUB_AUTH',
      `${subject} is gated${said}: accept its conditions on its page on the hub, then ${tokenHint}`,
      details,
    );
  }
  if ((status === 401 || status === 403) && !context.repo) {
    // A plain URL: no token of ours goes there.
    return new DownloadError('ERR_HUB_AUTH', `${subject}: the server refused access${said}`, details);
  }
  if (status === 401 || status === 403) {
    const refused = context.withToken ? 'the hub refused the token' : 'a token is needed';
    return new DownloadError('ERR_HUB_AUTH', `${subject}: ${refused}${said}; ${tokenHint}`, details);
  }
  if (status === 404) return new DownloadError('ERR_HUB_NOT_FOUND', `${subject} was not found${said}`, details);
  return new DownloadError('ERR_NETWORK', `Cannot download ${subject}: the server answered${said}`, details);
}

function pick(context: HubContext): DownloadErrorDetails {
  const out: DownloadErrorDetails = {};
  if (context.repo) out.repo = context.repo;
  if (context.file) out.file = context.file;
  return out;
}

/**
 * A fetch for @huggingface/hub's calls: a refused request becomes our coded error (with the
 * hub's reason), a failed connection ERR_NETWORK; the library only sees successful answers.
 * A busy server or a dropped connection is asked again twice (these calls are all idempotent).
 */
export function hubFetch(context: HubContext, tries = 3): typeof fetch {
  return async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(input, init);
      } catch (error) {
        if (init?.signal?.aborted || !isNetworkFailure(error)) throw error;
        // Nobody listening, or no such host: asking again will not help (and the cache may answer).
        const unreachable = ['ECONNREFUSED', 'ENOTFOUND'].includes(causeCode(error) ?? '');
        if (attempt < tries && !unreachable) {
          await sleep(500 * attempt);
          continue;
        }
        throw networkError({ ...pick(context), url }, error, context.endpoint);
      }
      if (res.ok) return res;
      if (retryableStatus(res.status) && attempt < tries) {
        await res.body?.cancel();
        await sleep(500 * attempt);
        continue;
      }
      throw await httpError(res, { ...context, url });
    }
  };
}
