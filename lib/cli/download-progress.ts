/**
 * Progress of `fastcomposer pull` on stderr: a bar per downloaded file (bytes, speed, time
 * left), then the export's stages. Without a terminal, one line per file and per stage.
 */
import cliProgress from 'cli-progress';

import { type PullEvent, formatBytes } from '../hub/index.js';
import { progressBar } from './progress.js';

function label(event: { repo?: string; file: string }): string {
  return event.repo ? `${event.repo} ${event.file}` : event.file;
}

/** Bytes per second over the last few seconds (a whole-file average hides a stall). */
class Speed {
  private samples: Array<[number, number]> = [];
  add(bytes: number): number {
    const now = performance.now();
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    return now - t0 > 0 ? ((bytes - b0) * 1000) / (now - t0) : 0;
  }
}

export interface PullReporter {
  onEvent(event: PullEvent): void;
  stop(): void;
}

export function pullReporter(tty: boolean): PullReporter {
  const exportBar = progressBar(tty);
  let bar: cliProgress.SingleBar | undefined;
  let speed = new Speed();
  let started = performance.now();
  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  const stopBar = (): void => {
    bar?.stop();
    bar = undefined;
  };
  return {
    onEvent(event) {
      switch (event.type) {
        case 'resolved':
          say(`${event.repo}@${event.revision}: commit ${event.commit.slice(0, 12)}${event.offline ? ' (from the cache, offline)' : ''}`);
          break;
        case 'file':
          speed = new Speed();
          started = performance.now();
          if (event.cached) break;
          if (tty) {
            bar = new cliProgress.SingleBar(
              {
                format: '{file} [{bar}] {percentage}% | {value}/{total} | {speed}/s | {eta_formatted} left',
                stream: process.stderr,
                hideCursor: true,
                etaBuffer: 200,
                formatValue: (v, _options, type) => (type === 'value' || type === 'total' ? formatBytes(v) : String(v)),
              },
              cliProgress.Presets.shades_classic,
            );
            bar.start(event.size ?? 0, 0, { file: label(event), speed: '0 B' });
          } else {
            say(`downloading ${label(event)}${event.size !== undefined ? ` (${formatBytes(event.size)})` : ''}`);
          }
          break;
        case 'progress': {
          const rate = speed.add(event.bytes);
          if (bar) {
            if (event.total !== undefined && event.total !== bar.getTotal()) bar.setTotal(event.total);
            bar.update(event.bytes, { speed: formatBytes(rate) });
          }
          break;
        }
        case 'file-done': {
          stopBar();
          const seconds = (performance.now() - started) / 1000;
          if (event.cached) say(`${label(event)}: in the cache (${formatBytes(event.size)})`);
          else {
            const rate = seconds > 0 ? ` at ${formatBytes(event.downloaded / seconds)}/s` : '';
            const resumed = event.downloaded < event.size ? `, resumed after ${formatBytes(event.size - event.downloaded)}` : '';
            say(`${label(event)}: ${formatBytes(event.downloaded)} in ${seconds.toFixed(1)} s${rate}${resumed}`);
          }
          break;
        }
        case 'export':
          exportBar.update(Math.min(event.done, event.total), event.total, `export: ${event.stage} ${event.status}`.trim());
          break;
      }
    },
    stop() {
      stopBar();
      exportBar.stop();
    },
  };
}
