// Runs a fixture script in a child Node process, so that a native crash fails one test
// instead of killing the test runner; returns its exit status and the RESULT line it printed.
import { spawn } from 'node:child_process';

export interface ChildRun<T> {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  result: T | undefined;
  /** The last "CASE ..." line printed before the end (names the input when the child died). */
  lastCase: string | undefined;
}

export function runChild<T>(script: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<ChildRun<T>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = stdout.split('\n');
      const line = lines.find((l) => l.startsWith('RESULT '));
      const lastCase = lines.filter((l) => l.startsWith('CASE ')).at(-1);
      resolve({ code, signal, stdout, stderr, result: line ? (parseResult(line.slice(7)) as T) : undefined, lastCase });
    });
  });
}

/** A RESULT line holds JSON, or a plain word such as ok. */
function parseResult(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
