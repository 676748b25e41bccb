/**
 * GET /api/jobs/:id/events: the job's Server-Sent Events (through @fastify/sse). The first event
 * is the job's state now (`queued`, `progress`, or its end), then `queued` when its place in the
 * queue changes, `progress` per step, and one of `done`, `failed`, `cancelled`, after which the
 * stream ends. Every event's data is the job's JSON. A client that goes away only unsubscribes:
 * the job goes on.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';

import { FINISHED, type Job, type JobStatus } from './job.js';
import type { JobEventType, JobStore } from './job-store.js';

function currentType(job: Job): JobEventType {
  if (job.finished) return job.status as JobEventType;
  return job.status === 'queued' ? 'queued' : 'progress';
}

export function eventRoutes(app: FastifyInstance, store: JobStore): void {
  app.get<{ Params: { id: string } }>('/api/jobs/:id/events', { sse: 'manual' }, async (request, reply: FastifyReply) => {
    const job = store.require(request.params.id);
    const sse = reply.sse;
    sse.keepAlive();
    const send = (type: JobEventType, data: unknown): void => {
      // Writes are synchronous on the socket, so events keep their order; a gone client is not an error.
      if (sse.isConnected) sse.send({ event: type, data }).catch(() => undefined);
      if (FINISHED.has(type as JobStatus)) sse.close();
    };
    // Subscribe before the first write so that no event falls between the two.
    const unsubscribe = job.finished ? () => undefined : store.subscribe(job.id, (event) => send(event.type, event.job));
    sse.onClose(unsubscribe);
    send(currentType(job), store.json(job));
  });
}
