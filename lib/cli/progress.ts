/** One progress bar for long work, on stderr so stdout stays clean; silent when not a TTY. */
import cliProgress from 'cli-progress';

export interface Progress {
  update(value: number, total: number, label: string): void;
  stop(): void;
}

export function progressBar(enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) {
    let last = '';
    return {
      update(_value, _total, label) {
        // Without a terminal, print a line per stage rather than redrawing a bar.
        if (label !== last) process.stderr.write(`${label}\n`);
        last = label;
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { format: '{label} [{bar}] {value}/{total} | {duration_formatted}', stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(value, total, label) {
      if (!started) {
        bar.start(total, value, { label });
        started = true;
      }
      bar.setTotal(total);
      bar.update(value, { label });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
