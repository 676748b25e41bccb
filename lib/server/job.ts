/** One job of the server: its state, its stored PNGs, and the JSON a client sees. */
import type { GenerateOptions } from '../options.js';
import type { ApiErrorCode } from './errors.js';

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
export const FINISHED: ReadonlySet<JobStatus> = new Set(['done', 'failed', 'cancelled']);

export interface JobJson {
  id: string;
  status: JobStatus;
  /** UNet steps done so far, of `steps` (PNDM runs one step more than asked for: `steps` follows the scheduler once running). */
  step: number;
  steps: number;
  /** Jobs ahead of this one in the queue (0 = next); null unless queued. */
  position: number | null;
  seed: number;
  subjects: number;
  numImages: number;
  /** URLs of the PNGs, once done. */
  images: string[];
  /** URLs of the heat maps, once done with attentionMaps: image-major (image 0's subjects, then image 1's, ...). */
  attentionMaps: string[];
  warnings: string[];
  error: { code: ApiErrorCode; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** When a finished job and its images will be dropped. */
  expiresAt: string | null;
}

export class Job {
  status: JobStatus = 'queued';
  step = 0;
  steps: number;
  readonly createdAt = Date.now();
  startedAt: number | undefined;
  finishedAt: number | undefined;
  expiresAt: number | undefined;
  /** The request, kept only until the job runs (the uploads are the bulk of it). */
  options: GenerateOptions | undefined;
  readonly controller = new AbortController();
  images: Buffer[] = [];
  /** heatmaps[image][subject]. */
  heatmaps: Buffer[][] = [];
  warnings: string[] = [];
  error: { code: ApiErrorCode; message: string } | null = null;

  constructor(
    readonly id: string,
    options: GenerateOptions,
    readonly seed: number,
    steps: number,
    readonly subjects: number,
    readonly numImages: number,
  ) {
    this.options = options;
    this.steps = steps;
  }

  get finished(): boolean {
    return FINISHED.has(this.status);
  }

  /** Bytes of PNGs this job holds. */
  get storedBytes(): number {
    let bytes = 0;
    for (const png of this.images) bytes += png.length;
    for (const maps of this.heatmaps) for (const png of maps) bytes += png.length;
    return bytes;
  }

  toJSON(position: number | null): JobJson {
    const base = `/api/jobs/${this.id}`;
    const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString());
    return {
      id: this.id,
      status: this.status,
      step: this.step,
      steps: this.steps,
      position,
      seed: this.seed,
      subjects: this.subjects,
      numImages: this.numImages,
      images: this.images.map((_, n) => `${base}/images/${n}`),
      attentionMaps: this.heatmaps.flatMap((maps, n) => maps.map((_, s) => `${base}/images/${n}/attention/${s}`)),
      warnings: this.warnings,
      error: this.error,
      createdAt: iso(this.createdAt)!,
      startedAt: iso(this.startedAt),
      finishedAt: iso(this.finishedAt),
      expiresAt: iso(this.expiresAt),
    };
  }
}
