// Helpers for the server tests: multipart posts with fetch's FormData, reading a job's event
// stream, and error-body checks.
import { expect } from 'vitest';

import type { JobJson } from '../../lib/server/index.js';

export type Fields = Record<string, string | number | boolean | Array<string | number>>;

export function form(fields: Fields, subjects: Buffer[] = []): FormData {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    for (const v of Array.isArray(value) ? value : [value]) data.append(name, String(v));
  }
  subjects.forEach((bytes, i) => data.append('subject', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), `subject-${i}.png`));
  return data;
}

export async function post(base: string, fields: Fields, subjects: Buffer[] = []): Promise<{ status: number; body: any }> {
  const res = await fetch(new URL('api/generate', base), { method: 'POST', body: form(fields, subjects) });
  return { status: res.status, body: await res.json() };
}

export async function getJson(base: string, path: string, init?: RequestInit): Promise<{ status: number; body: any }> {
  const res = await fetch(new URL(path, base), init);
  return { status: res.status, body: await res.json() };
}

export interface SseEvent {
  event: string;
  data: JobJson;
}

/**
 * Reads a job's event stream until the server ends it (or `stopAfter` says to drop it); the
 * stream format is `event:` and `data:` lines, blocks split by blank lines, `:` comments.
 */
export async function readEvents(base: string, id: string, stopAfter?: (e: SseEvent) => boolean): Promise<SseEvent[]> {
  const controller = new AbortController();
  const res = await fetch(new URL(`api/jobs/${id}/events`, base), { signal: controller.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const lines = block.split('\n').filter((l) => !l.startsWith(':'));
        if (lines.length === 0) continue;
        const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
        const data = lines
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        const e = { event, data: JSON.parse(data) as JobJson };
        events.push(e);
        if (stopAfter?.(e)) {
          controller.abort();
          return events;
        }
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  }
  return events;
}

/** An error answer: the status, the code, exactly { error: { code, message } }, and no stack trace. */
export function expectError(res: { status: number; body: any }, status: number, code: string): string {
  expect(res.body).toEqual({ error: { code, message: expect.any(String) } });
  expect(res.status).toBe(status);
  expect(res.body.error.message).not.toMatch(/\n\s+at /);
  return res.body.error.message as string;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
