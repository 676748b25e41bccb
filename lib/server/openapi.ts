/** GET /api/openapi.json: the API as an OpenAPI 3.1 document (a test checks it names every route). */
import { IMAGE_TOKENS, SCHEDULERS } from '../options.js';

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});
const jobResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Job' } } },
});
const png = (description: string) => ({ description, content: { 'image/png': { schema: { type: 'string', format: 'binary' } } } });
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const nParam = { name: 'n', in: 'path', required: true, description: 'image index, from 0', schema: { type: 'integer', minimum: 0 } };
const sParam = { name: 's', in: 'path', required: true, description: 'subject index, from 0', schema: { type: 'integer', minimum: 0 } };
const notFound = errorResponse('ERR_JOB_NOT_FOUND (no such job, or it expired) or ERR_NOT_FOUND');

export const openapiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'fastcomposer',
    version: '1',
    description:
      'FastComposer (multi-subject personalized text-to-image) as a job queue. Mark each subject in the prompt with <|image|> ' +
      "(or MMagic's img, with imageToken=img) after its noun and send one `subject` file per marker, in order. " +
      'Errors are {"error": {"code", "message"}}.',
  },
  paths: {
    '/api/generate': {
      post: {
        summary: 'Queue a generation',
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                required: ['prompt'],
                properties: {
                  prompt: { type: 'string', example: 'a man <|image|> and a woman <|image|> in a park' },
                  negativePrompt: { type: 'string' },
                  imageToken: {
                    type: 'string',
                    enum: [...IMAGE_TOKENS],
                    default: IMAGE_TOKENS[0],
                    description: "the prompt's subject marker: <|image|>, or img as in MMagic's prompts (a man img in a park)",
                  },
                  steps: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
                  guidanceScale: { type: 'number', minimum: 0, maximum: 100, default: 5 },
                  alpha: { type: 'number', minimum: 0, maximum: 1, default: 0.7 },
                  seed: { type: 'integer', minimum: 0, description: 'drawn when left out; the job says which' },
                  width: { type: 'integer', minimum: 64, maximum: 2048, multipleOf: 8, default: 512 },
                  height: { type: 'integer', minimum: 64, maximum: 2048, multipleOf: 8, default: 512 },
                  numImages: { type: 'integer', minimum: 1, maximum: 16, default: 1 },
                  scheduler: { type: 'string', enum: [...SCHEDULERS], default: 'pndm' },
                  regionStrength: { type: 'number', minimum: 0, maximum: 1, default: 1 },
                  regionExclusive: { type: 'boolean', default: false },
                  attentionMaps: { type: 'boolean', default: false, description: 'also make a heat map per image and subject' },
                  subject: {
                    type: 'array',
                    items: { type: 'string', format: 'binary' },
                    description: 'one picture per marker (<|image|> or img), in order',
                  },
                  region: {
                    type: 'array',
                    items: { type: 'string' },
                    description: 'per subject, in order: JSON {"x","y","width","height"} in output pixels, or empty for none',
                  },
                },
              },
            },
          },
        },
        responses: {
          202: jobResponse('Queued; the Location header names the job'),
          400: errorResponse('ERR_INVALID_ARGUMENT, ERR_SUBJECT_COUNT, ERR_PROMPT or ERR_IMAGE'),
          413: errorResponse('ERR_UPLOAD_TOO_LARGE'),
          429: errorResponse('ERR_QUEUE_FULL'),
          503: errorResponse('ERR_SHUTTING_DOWN'),
        },
      },
    },
    '/api/jobs/{id}': {
      get: { summary: "A job's state", parameters: [idParam], responses: { 200: jobResponse('The job'), 404: notFound } },
      delete: {
        summary: 'Cancel a queued or running job',
        parameters: [idParam],
        responses: {
          200: jobResponse('Cancelled (it was queued)'),
          202: jobResponse('Stopping (it was running); it turns cancelled within a step'),
          404: notFound,
          409: errorResponse('ERR_JOB_FINISHED'),
        },
      },
    },
    '/api/jobs/{id}/events': {
      get: {
        summary: "The job's progress as Server-Sent Events",
        description:
          "Events queued, progress (one per step), then done, failed or cancelled, after which the stream ends; each event's data is the job's JSON. " +
          'Dropping the stream does not cancel the job.',
        parameters: [idParam],
        responses: {
          200: { description: 'The event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          404: notFound,
        },
      },
    },
    '/api/jobs/{id}/images/{n}': {
      get: {
        summary: 'A generated image',
        parameters: [idParam, nParam],
        responses: { 200: png('The PNG'), 404: notFound, 409: errorResponse('ERR_JOB_NOT_DONE') },
      },
    },
    '/api/jobs/{id}/images/{n}/attention/{s}': {
      get: {
        summary: "A subject's attention heat map over a generated image (jobs run with attentionMaps)",
        parameters: [idParam, nParam, sParam],
        responses: { 200: png('The PNG'), 404: notFound, 409: errorResponse('ERR_JOB_NOT_DONE') },
      },
    },
    '/api/health': {
      get: {
        summary: 'The model, device, dtype, queue and limits',
        responses: {
          200: { description: 'The server', content: { 'application/json': { schema: { $ref: '#/components/schemas/Health' } } } },
        },
      },
    },
    '/api/openapi.json': { get: { summary: 'This document', responses: { 200: { description: 'OpenAPI 3.1' } } } },
  },
  components: {
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } },
        },
      },
      Job: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          status: { type: 'string', enum: ['queued', 'running', 'done', 'failed', 'cancelled'] },
          step: { type: 'integer', description: 'UNet steps done' },
          steps: { type: 'integer', description: 'UNet steps in all (PNDM runs one more than asked once it starts)' },
          position: { type: ['integer', 'null'], description: 'jobs ahead of this one while queued (0 = next)' },
          seed: { type: 'integer' },
          subjects: { type: 'integer' },
          numImages: { type: 'integer' },
          images: { type: 'array', items: { type: 'string' }, description: 'PNG URLs, once done' },
          attentionMaps: { type: 'array', items: { type: 'string' }, description: 'heat-map URLs, image by image, subject by subject' },
          warnings: { type: 'array', items: { type: 'string' } },
          error: { oneOf: [{ type: 'null' }, { $ref: '#/components/schemas/Error/properties/error' }] },
          createdAt: { type: 'string', format: 'date-time' },
          startedAt: { type: ['string', 'null'], format: 'date-time' },
          finishedAt: { type: ['string', 'null'], format: 'date-time' },
          expiresAt: { type: ['string', 'null'], format: 'date-time', description: 'when a finished job and its images are dropped' },
        },
      },
      Health: {
        type: 'object',
        properties: {
          status: { type: 'string', enum: ['ok', 'closing'] },
          backend: {
            type: 'string',
            enum: ['model', 'queue'],
            description: "a model in the server's process, or workers behind a job queue",
          },
          queueName: { type: 'string', description: 'the job queue (queue backend only)' },
          model: { type: 'string', description: "'queue' when workers behind a queue hold the model" },
          device: { type: 'string' },
          dtype: { type: 'string' },
          queue: { type: 'object' },
          limits: { type: 'object' },
          pageDefaults: { type: 'object', description: "where the page's width, height, steps and numImages start" },
        },
      },
    },
  },
} as const;
