// A private redis-server for a test or a benchmark (Debian's package): 127.0.0.1, a free port, a
// temporary folder, no persistence. restart() stops it and starts it again on the same port,
// either keeping the data (SHUTDOWN SAVE, then loading that dump, as a Redis with persistence
// would) or losing it (SIGKILL, as a crash of a Redis without persistence).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Redis } from 'ioredis';

const BINARY = process.env.REDIS_SERVER ?? 'redis-server';

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

function launch(port, dir) {
  return new Promise((resolve, reject) => {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--dbfilename',
      'dump.rdb',
    ];
    const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not start within 15 s:\n${output}`));
    }, 15_000);
    const onData = (d) => {
      output += d;
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${BINARY} (install Debian's redis-server): ${error.message}`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}:\n${output}`));
    });
  });
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve(undefined)));
}

/** @returns {Promise<{ url: string, port: number, restart(o?: { keepData?: boolean, downMs?: number }): Promise<void>, stop(): Promise<void> }>} */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fastcomposer-redis-'));
  let child = await launch(port, dir);
  const url = `redis://127.0.0.1:${port}`;
  return {
    url,
    port,
    async restart({ keepData = false, downMs = 0 } = {}) {
      if (keepData) {
        const client = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
        client.on('error', () => undefined);
        await client.call('SHUTDOWN', 'SAVE').catch(() => undefined); // the connection drops as it answers
        client.disconnect();
      } else {
        child.kill('SIGKILL');
        rmSync(join(dir, 'dump.rdb'), { force: true });
      }
      await exited(child);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      child = await launch(port, dir);
    },
    async stop() {
      child.kill('SIGKILL');
      await exited(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
