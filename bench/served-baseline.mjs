// A Python baseline run as one long-lived `--serve` process (bench/python_eager.py,
// bench/diffusers_reference.py): load once, then one timed generation per "run" line, one JSON
// line back each, so a benchmark can alternate it with Node run by run.
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';

// The user's THP_MEM_ALLOC_ENABLE, read before the addon loads and sets its own default
// (native/cpu_memory.h): a Python baseline runs with the environment its users give it, so
// huge pages only where the user asked for them (THP_MEM_ALLOC_ENABLE=1 before the bench gives
// both sides huge pages).
const userThp = process.env.THP_MEM_ALLOC_ENABLE;

/** `env` with THP_MEM_ALLOC_ENABLE as the user set it (or unset). */
export function baselineEnv(env) {
  const out = { ...env };
  if (userThp === undefined) delete out.THP_MEM_ALLOC_ENABLE;
  else out.THP_MEM_ALLOC_ENABLE = userThp;
  return out;
}

export class ServedBaseline {
  /** python: the interpreter; script: the baseline's path; args: its options (without --serve). */
  constructor(python, script, args, env = process.env) {
    this.script = basename(script);
    this.hugePages = userThp ?? 'unset';
    this.child = spawn(python, [script, '--serve', '--json', ...args], { env: baselineEnv(env), stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.stdin.on('error', () => {}); // a child that died is reported by next()
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => resolve(code));
      this.child.once('error', (e) => {
        console.error(`bench: cannot start ${python}: ${e.message}`);
        resolve(-1);
      });
    });
  }

  /** The next JSON line (the first one is {"type":"ready"}). */
  async next() {
    const r = await Promise.race([this.lines.next(), this.exited.then((code) => ({ exitCode: code }))]);
    if (r.exitCode !== undefined || r.done) {
      const code = r.exitCode ?? (await this.exited);
      throw new Error(`${this.script} exited (code ${code ?? '?'}); see its stderr above`);
    }
    const msg = JSON.parse(r.value);
    if (msg.type === 'error') throw new Error(`${this.script}: ${msg.message}`);
    return msg;
  }

  /** One timed generation; `overrides` ({ steps, width, height, seed }) change that run only. */
  async run(overrides) {
    this.child.stdin.write(overrides ? `run ${JSON.stringify(overrides)}\n` : 'run\n');
    return this.next();
  }

  async close() {
    this.child.stdin.end('quit\n');
    await this.exited;
  }
}
