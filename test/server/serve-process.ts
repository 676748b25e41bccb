// `fastcomposer serve` in a child process (the bundled CLI): its URL once it listens, its output,
// and its exit.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

export const cli = join(import.meta.dirname, '..', '..', 'dist', 'esm', 'cli', 'main.js');

export interface ServeProcess {
  child: ChildProcess;
  /** The printed URL, once it listens; rejects when the process exits first. */
  url: Promise<string>;
  stdout(): string;
  stderr(): string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

export function serveProcess(args: string[]): ServeProcess {
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const m = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stdout);
      if (m) resolve(m[1]!);
    });
    child.on('exit', () => reject(new Error(`serve exited before listening:\n${stdout}\n${stderr}`)));
  });
  url.catch(() => undefined); // a test that expects the exit reads it there
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, url, stdout: () => stdout, stderr: () => stderr, exit };
}
