// A Python baseline run as one long-lived `--serve` process (bench/python_eager.py,
// bench/diffusers_reference.py): load once, then one timed generation per "run" line, one JSON
// line back each, so a benchmark can alternate it with Node run by run.
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';

export class ServedBaseline {
  /** python: the interpreter; script: the baseline's path; args: its options (without --serve). */
  constructor(python, script, args, env = process.env) {
    this.script = basename(script);
    this.child = spawn(python, [script, '--serve', '--json', ...args], { env, stdio: ['pipe', 'pipe', 'inherit'] });
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
