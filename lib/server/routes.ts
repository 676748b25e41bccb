/** The JSON and PNG routes of the API (the event stream is events.ts, the document openapi.ts). */
import type { FastifyInstance } from 'fastify';

import type { BackendInfo } from './backend.js';
import { ApiError } from './errors.js';
import { readGenerateForm } from './form.js';
import type { Job } from './job.js';
import type { JobStore } from './job-store.js';
import type { ServerLimits } from './limits.js';
import { openapiDocument } from './openapi.js';
import type { PageDefaults } from './static.js';

type JobParams = { Params: { id: string } };
type ImageParams = { Params: { id: string; n: string; s?: string } };

/** A path index: digits only, below `count`; otherwise 404. */
function index(value: string | undefined, count: number, what: string): number {
  const n = value !== undefined && /^\d{1,6}$/.test(value) ? Number(value) : NaN;
  if (!(n < count))
    throw new ApiError(404, 'ERR_NOT_FOUND', `No ${what} ${JSON.stringify(value)} (there ${count === 1 ? 'is 1' : `are ${count}`})`);
  return n;
}

function doneJob(job: Job): Job {
  if (job.status === 'done') return job;
  if (job.finished) throw new ApiError(404, 'ERR_NOT_FOUND', `Job ${job.id} is ${job.status} and has no images`);
  throw new ApiError(409, 'ERR_JOB_NOT_DONE', `Job ${job.id} is ${job.status}; its images are ready when it is done`);
}

export interface ApiSettings {
  info: BackendInfo;
  limits: ServerLimits;
  pageDefaults: PageDefaults;
}

export function apiRoutes(app: FastifyInstance, store: JobStore, { info, limits, pageDefaults }: ApiSettings): void {
  app.get('/api/health', () => ({
    status: store.isClosing ? 'closing' : 'ok',
    backend: 'model',
    ...info,
    queue: store.stats(),
    limits,
    pageDefaults,
  }));

  app.get('/api/openapi.json', () => openapiDocument);

  app.post('/api/generate', async (request, reply) => {
    // Refuse before the upload when nothing could be queued anyway; add() checks again after it.
    store.checkRoom();
    const spec = await readGenerateForm(request, limits);
    const job = store.add(spec);
    return reply.code(202).header('location', `/api/jobs/${job.id}`).send(store.json(job));
  });

  app.get<JobParams>('/api/jobs/:id', (request) => store.json(store.require(request.params.id)));

  app.delete<JobParams>('/api/jobs/:id', async (request, reply) => {
    const job = store.cancel(request.params.id);
    // A queued job is cancelled now; a running one stops within a step (its events say when).
    return reply.code(job.finished ? 200 : 202).send(store.json(job));
  });

  app.get<ImageParams>('/api/jobs/:id/images/:n', async (request, reply) => {
    const job = doneJob(store.require(request.params.id));
    const png = job.images[index(request.params.n, job.images.length, 'image')]!;
    return reply.type('image/png').header('cache-control', 'private, max-age=3600, immutable').send(png);
  });

  app.get<ImageParams>('/api/jobs/:id/images/:n/attention/:s', async (request, reply) => {
    const job = doneJob(store.require(request.params.id));
    if (job.heatmaps.length === 0) throw new ApiError(404, 'ERR_NOT_FOUND', `Job ${job.id} was run without attentionMaps`);
    const maps = job.heatmaps[index(request.params.n, job.heatmaps.length, 'image')]!;
    const png = maps[index(request.params.s, maps.length, 'subject')]!;
    return reply.type('image/png').header('cache-control', 'private, max-age=3600, immutable').send(png);
  });
}
