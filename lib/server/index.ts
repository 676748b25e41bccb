/**
 * `fastcomposer/server`: the HTTP API and the demo page in front of a generate() backend (a loaded
 * FastComposer, or anything with the same generate()). createServer() builds it; listen() serves
 * it; close() takes no more jobs, cancels the queued ones, aborts the running ones and stops.
 */
import fastifyMultipart from '@fastify/multipart';
import { fastifySSE } from '@fastify/sse';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';

import { FastComposerError, invalidArgument } from '../errors.js';
import type { BackendInfo, GenerateBackend } from './backend.js';
import { ApiError, type ApiErrorBody, isCallerCode } from './errors.js';
import { eventRoutes } from './events.js';
import { JobStore } from './job-store.js';
import { resolveLimits, type ServerLimits } from './limits.js';
import { apiRoutes } from './routes.js';
import { checkPageDefaults, type PageDefaults, pageRoutes } from './static.js';

export type { BackendImage, BackendInfo, BackendResult, GenerateBackend } from './backend.js';
export type { ApiErrorCode, ServerErrorCode } from './errors.js';
export type { JobJson, JobStatus } from './job.js';
export type { QueueStats } from './job-store.js';
export { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
export type { PageDefaults } from './static.js';

export interface ServerOptions {
  backend: GenerateBackend;
  /** What /api/health reports. */
  info: BackendInfo;
  /** Jobs run at once: 1 for a model in this process; more for a backend whose workers do the work. Default 1. */
  concurrency?: number;
  limits?: Partial<ServerLimits>;
  /** Where the page's fields start (default: the seed demo's values). */
  pageDefaults?: PageDefaults;
  /** Called with each error answered as 500 ERR_INTERNAL (the client sees no details). */
  onInternalError?: (error: unknown) => void;
}

export interface ListenOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 7860; 0 picks a free port. */
  port?: number;
}

export class FastComposerServer {
  /** The address once listening, e.g. http://127.0.0.1:7860/. */
  url: string | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    readonly app: FastifyInstance,
    readonly jobs: JobStore,
  ) {}

  async listen(options: ListenOptions = {}): Promise<string> {
    const address = await this.app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 7860 });
    this.url = `${address}/`;
    return this.url;
  }

  /** Stops: new jobs get 503, queued ones are cancelled, running ones aborted and awaited, then the HTTP server closes. */
  close(): Promise<void> {
    this.closing ??= this.jobs.close().then(() => this.app.close());
    return this.closing;
  }
}

function checkOptions(options: ServerOptions): { concurrency: number; limits: ServerLimits; pageDefaults: PageDefaults } {
  if (options === null || typeof options !== 'object') throw invalidArgument('object', 'options', options);
  if (typeof options.backend?.generate !== 'function') throw invalidArgument('object with a generate() method', 'backend', options.backend);
  for (const key of ['model', 'device', 'dtype'] as const) {
    if (typeof options.info?.[key] !== 'string') throw invalidArgument('string', `info.${key}`, options.info?.[key]);
  }
  const { backend, queueName } = options.info;
  if (backend !== undefined && backend !== 'model' && backend !== 'queue')
    throw invalidArgument("'model' or 'queue'", 'info.backend', backend);
  if (queueName !== undefined && typeof queueName !== 'string') throw invalidArgument('string', 'info.queueName', queueName);
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024)
    throw invalidArgument('integer between 1 and 1024', 'concurrency', concurrency);
  return { concurrency, limits: resolveLimits(options.limits), pageDefaults: checkPageDefaults(options.pageDefaults) };
}

/** The error answer for anything a route threw. */
function errorAnswer(error: unknown, onInternalError?: (error: unknown) => void): { status: number; body: ApiErrorBody } {
  if (error instanceof ApiError) return { status: error.status, body: error.body() };
  const e = error as Partial<FastComposerError & FastifyError> | null;
  if (e && typeof e.code === 'string' && isCallerCode(e.code) && typeof e.message === 'string') {
    return { status: 400, body: { error: { code: e.code, message: e.message } } };
  }
  // Fastify's own refusals (an unsupported content type, a body over its limit, ...) keep their status;
  // the static files' 403 (a path out of the folder) is a plain 404.
  const status = e?.statusCode;
  if (status === 403 || status === 404) return { status: 404, body: { error: { code: 'ERR_NOT_FOUND', message: 'Not found' } } };
  if (typeof status === 'number' && status >= 400 && status < 500 && typeof e?.message === 'string') {
    return { status, body: { error: { code: status === 413 ? 'ERR_UPLOAD_TOO_LARGE' : 'ERR_INVALID_ARGUMENT', message: e.message } } };
  }
  onInternalError?.(error);
  return { status: 500, body: { error: { code: 'ERR_INTERNAL', message: 'Internal server error' } } };
}

/** Builds the server (routes, page, job queue) without listening. */
export async function createServer(options: ServerOptions): Promise<FastComposerServer> {
  const { concurrency, limits, pageDefaults } = checkOptions(options);
  // requestTimeout bounds a slow upload (an event stream is a response, which it does not cut).
  const app = Fastify({ logger: false, forceCloseConnections: 'idle', requestTimeout: 120_000 });
  const jobs = new JobStore(options.backend, concurrency, limits);
  app.setErrorHandler((error, _request, reply) => {
    const { status, body } = errorAnswer(error, options.onInternalError);
    void reply.code(status).type('application/json').send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const body: ApiErrorBody = { error: { code: 'ERR_NOT_FOUND', message: `No route ${request.method} ${request.url.split('?')[0]}` } };
    void reply.code(404).type('application/json').send(body);
  });
  await app.register(fastifyMultipart);
  await app.register(fastifySSE);
  apiRoutes(app, jobs, { info: options.info, limits, pageDefaults });
  eventRoutes(app, jobs);
  await pageRoutes(app);
  await app.ready();
  return new FastComposerServer(app, jobs);
}

/** createServer(), then listen(). */
export async function startServer(options: ServerOptions & ListenOptions): Promise<FastComposerServer> {
  const server = await createServer(options);
  try {
    await server.listen({
      ...(options.host !== undefined ? { host: options.host } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
    });
  } catch (error) {
    await server.close(); // e.g. the port is taken: nothing of it stays behind
    throw error;
  }
  return server;
}
