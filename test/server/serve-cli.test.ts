// `fastcomposer serve` in a child process, stopped by SIGINT or SIGTERM while a job runs and
// another waits: both end cancelled, the server closes, the model is disposed, the exit code is 0.
import { spawn } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';

import { describe, expect, it } from 'vitest';

import { getJson, post, readEvents, waitFor } from './helpers.js';
import { cli, type ServeProcess, serveProcess } from './serve-process.js';

function serve(): ServeProcess {
  return serveProcess(['--device', 'cpu']);
}

describe('fastcomposer serve', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)(
    'stops cleanly on %s: running job aborted, queued one cancelled, exit code 0',
    async (signal) => {
      const { child, url, exit } = serve();
      try {
        const base = await url;
        expect((await getJson(base, 'api/health')).body).toMatchObject({
          status: 'ok',
          model: 'tiny',
          device: 'cpu',
          pageDefaults: { width: 128, height: 128, steps: 20, numImages: 2 }, // the embedded model's pictures are noise: the page starts small
        });
        const long = { prompt: 'a house', steps: 500, width: 64, height: 64, scheduler: 'ddim' };
        const running = await post(base, long);
        await readEvents(base, running.body.id, (e) => e.data.step >= 1);
        const queued = await post(base, long);
        expect(queued.body.status).toBe('queued');
        const streams = [readEvents(base, running.body.id), readEvents(base, queued.body.id)];
        await new Promise((r) => setTimeout(r, 200)); // both streams subscribed
        child.kill(signal);
        const [runningEvents, queuedEvents] = await Promise.all(streams);
        for (const events of [runningEvents!, queuedEvents!]) {
          expect(events.at(-1)).toMatchObject({ event: 'cancelled', data: { status: 'cancelled', error: { code: 'ERR_SHUTTING_DOWN' } } });
        }
        expect(runningEvents!.at(-1)!.data.step).toBeLessThan(500);
        const result = await exit;
        expect(result).toMatchObject({ code: 0, signal: null });
        expect(result.stderr).toContain(`fastcomposer: ${signal}: stopping`);
        expect(result.stderr).toContain('fastcomposer: stopped');
        expect(result.stderr).not.toMatch(/\n\s+at /);
        await expect(fetch(base)).rejects.toThrow();
      } finally {
        child.kill('SIGKILL');
      }
    },
    240_000,
  );

  it('says so when the port is taken, and exits 1', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const child = spawn(process.execPath, [cli, 'serve', '--port', String(port), '--device', 'cpu'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const code = await new Promise((resolve) => child.on('exit', resolve));
      expect(code).toBe(1);
      expect(stderr).toContain(
        `fastcomposer: Cannot listen on 127.0.0.1:${port} (EADDRINUSE); pick another --host or --port [ERR_INVALID_ARGUMENT]\n`,
      );
    } finally {
      taken.close();
    }
  }, 120_000);

  it('--max-batch-size: the model takes that many jobs at once, which share its batches', async () => {
    const served = serveProcess(['--device', 'cpu', '--max-batch-size', '4']);
    const { child, url, exit } = served;
    try {
      const base = await url;
      expect(served.stdout()).toContain('(float32, batches of up to 4 images)');
      const job = { prompt: 'a house', steps: 200, width: 64, height: 64, scheduler: 'ddim' };
      const ids = [];
      for (let k = 0; k < 3; k++) ids.push((await post(base, { ...job, seed: k })).body.id as string);
      // All three run at once: none waits in the server's queue.
      const health = await waitFor('three running jobs', async () => {
        const h = (await getJson(base, 'api/health')).body;
        return h.queue.running === 3 ? h : undefined;
      });
      expect(health.queue).toMatchObject({ concurrency: 4, running: 3, queued: 0 });
      for (const id of ids) expect((await readEvents(base, id)).at(-1)!.event).toBe('done');
      child.kill('SIGTERM');
      expect((await exit).code).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 240_000);

  it('refuses a bad --port with a clear message', async () => {
    const child = spawn(process.execPath, [cli, 'serve', '--port', '70000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toBe(
      'fastcomposer: Expected integer between 0 and 65535 for --port but received "70000" of type string [ERR_INVALID_ARGUMENT]\n',
    );
  });
});
