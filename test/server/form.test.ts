// A request refused part way through its body (a bad field before the files, a file over the
// limit, one file too many) leaves the connection usable: the rest of the body is read and dropped,
// so the client finishes its upload and its next request (one socket per client here) is answered
// (it used to stall until the request timeout reset the connection).
import { Agent, request } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type FastComposerServer, startServer } from '../../lib/server/index.js';
import { type Fields, form } from './helpers.js';

const subject = readFileSync(join(import.meta.dirname, '..', '..', 'examples', 'subject-a.png'));
// More than the socket buffers hold: the client is still sending when the answer comes.
const large = Buffer.concat([subject, Buffer.alloc(8 * 1024 * 1024)]);

interface Answer {
  status: number;
  body: any;
}

/** POSTs a form on `agent`; fails after 20 s without an answer. */
async function send(agent: Agent, url: string, fields: Fields, files: Buffer[]): Promise<Answer> {
  const encoded = new Response(form(fields, files));
  const body = Buffer.from(await encoded.arrayBuffer());
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      agent,
      timeout: 20_000,
      headers: { 'content-type': encoded.headers.get('content-type')!, 'content-length': body.length },
    });
    req.on('response', (res) => {
      let text = '';
      res
        .setEncoding('utf8')
        .on('data', (d: string) => (text += d))
        .on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 20 s')));
    req.on('error', reject);
    req.end(body);
  });
}

describe('a refused upload leaves the connection usable', () => {
  let server: FastComposerServer;
  let url: string;
  beforeAll(async () => {
    const backend = { generate: () => new Promise<never>(() => undefined) }; // jobs stay queued or running: only the answers matter here
    const limits = {
      maxFileBytes: subject.length + 100,
      maxRequestBytes: 64 * 1024 * 1024,
      maxFieldBytes: 1024,
      maxSubjects: 2,
      maxQueued: 100,
    };
    server = await startServer({ backend, info: { model: 'm', device: 'cpu', dtype: 'float32' }, port: 0, limits });
    url = new URL('api/generate', server.url).href;
  });
  afterAll(() => server?.app.close()); // not server.close(): it would wait for the never-ending jobs

  const one = { prompt: 'a man <|image|>', width: 64, height: 64 };
  it.each([
    ['an unknown field before the file', { ...one, colour: 'red' }, [large], 400, 'ERR_INVALID_ARGUMENT'],
    ['a field over the limit before the file', { ...one, negativePrompt: 'x'.repeat(5000) }, [large], 413, 'ERR_UPLOAD_TOO_LARGE'],
    ['a file over the limit before another', { ...one, prompt: 'a <|image|> b <|image|>' }, [large, large], 413, 'ERR_UPLOAD_TOO_LARGE'],
    ['one file too many', { ...one, prompt: 'a <|image|> b <|image|> c <|image|>' }, [subject, subject, large], 400, 'ERR_SUBJECT_COUNT'],
  ] as const)('%s', async (_name, fields, files, status, code) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const refused = await send(agent, url, fields, [...files]);
      expect(refused.status).toBe(status);
      expect(refused.body.error.code).toBe(code);
      const next = await send(agent, url, one, [subject]);
      expect(next.status).toBe(202);
    } finally {
      agent.destroy();
    }
  });
});
