/**
 * GET /v1/openapi.json: the OpenAPI 3.0 document, generated from the schemas the routes registered
 * (an onRoute hook collects them), so the document cannot drift from what the server validates.
 *
 * Schemas carrying a `title` (Service, Error, ...) become components and are referenced by $ref.
 * This module also holds the schemas every route shares: the error answers.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { ValidationIssue } from '../../lb/service.js';

export type JsonSchema = Record<string, unknown>;

/** The OpenAPI annotations our routes put beside their schemas. */
declare module 'fastify' {
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    operationId?: string;
    /** Keep the route out of the document. */
    hide?: boolean;
  }
}

export const issueSchema = {
  title: 'ValidationIssue',
  type: 'object',
  required: ['field', 'message'],
  properties: {
    field: { type: 'string', description: 'the offending field, e.g. "backends[1].port" ("" for the whole body)' },
    message: { type: 'string' },
  },
} as const;

/**
 * Every error answer, whoever produces it (our routes, fastify's parsers and router, the HTTP
 * parser): {error, issues}, `issues` empty when no part of the request is at fault.
 */
export const errorSchema = {
  title: 'Error',
  type: 'object',
  additionalProperties: false,
  required: ['error', 'issues'],
  properties: {
    error: { type: 'string', description: 'what went wrong, naming the field, service, table or errno' },
    issues: {
      type: 'array',
      items: issueSchema,
      description: 'one per offending field (field "" for the whole body: malformed, too large, wrong content type); empty when the input is not at fault',
    },
  },
} as const;

export interface ErrorBody {
  error: string;
  issues: ValidationIssue[];
}

/** The one shape of an error answer. */
export function errorBody(error: string, issues: ValidationIssue[] = []): ErrorBody {
  return { error, issues };
}

const errorDescriptions: Record<number, string> = {
  400: 'invalid input: `issues` names every offending field; nothing was changed',
  401: 'missing or wrong bearer token (TCP listener only; the unix socket needs none)',
  404: 'no such service, or no such route',
  405: 'the route exists but not with this method (the Allow header lists those it has)',
  409: 'another service has this frontend (address, port, protocol), or the service comes from Kubernetes (read-only here: change it through the apiserver); `issues` names the field',
  413: 'the body is larger than the agent accepts',
  415: 'the body is not application/json',
  500: 'the datapath or the state file refused the change; the previous state stays in place',
  503: 'the agent cannot take this request now (e.g. too many monitor streams); retry later',
  507: 'a table is full (service ids, backend ids or a datapath map): the error names it and its capacity; nothing was changed',
};

/** Response schemas for the given error codes (401 is added to every route: the TCP listener needs a token). */
export function errorResponses(...codes: number[]): Record<number, JsonSchema> {
  const out: Record<number, JsonSchema> = {};
  for (const code of [...new Set([...codes, 401])].sort((a, b) => a - b)) {
    out[code] = { ...errorSchema, description: errorDescriptions[code] ?? STATUS_CODES[code] ?? 'error' };
  }
  return out;
}

export interface CollectedRoute {
  method: string;
  url: string;
  schema: JsonSchema;
}

/** Records every route registered from now on (add before registering the route plugins). */
export function collectRoutes(app: FastifyInstance): CollectedRoute[] {
  const routes: CollectedRoute[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (method === 'HEAD' || (route.schema as JsonSchema | undefined)?.hide === true) continue;
      routes.push({ method, url: route.url, schema: (route.schema ?? {}) as JsonSchema });
    }
  });
  return routes;
}

function isSchema(value: unknown): value is JsonSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Builds the document: one path item per route, titled schemas hoisted into components. */
export function openApiDocument(routes: readonly CollectedRoute[], info: { title: string; version: string }): JsonSchema {
  const components: Record<string, JsonSchema> = {};

  const hoist = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(hoist);
    if (!isSchema(value)) return value;
    const walk = (schema: JsonSchema): JsonSchema =>
      Object.fromEntries(Object.entries(schema).map(([key, member]) => [key, hoist(member)]));
    const title = value.title;
    if (typeof title === 'string') {
      if (!(title in components)) {
        components[title] = {}; // reserve the name first: a schema may refer to itself
        const { description: _ignored, ...rest } = value;
        components[title] = walk(rest);
      }
      return { $ref: `#/components/schemas/${title}` };
    }
    return walk(value);
  };

  const parameters = (schema: unknown, where: 'path' | 'query'): JsonSchema[] => {
    if (!isSchema(schema) || !isSchema(schema.properties)) return [];
    const required = Array.isArray(schema.required) ? schema.required : [];
    return Object.entries(schema.properties).map(([name, member]) => {
      const { description, ...rest } = isSchema(member) ? member : {};
      const parameter: JsonSchema = { name, in: where, required: where === 'path' || required.includes(name), schema: hoist(rest) };
      if (typeof description === 'string') parameter.description = description;
      return parameter;
    });
  };

  const responses = (schema: unknown): JsonSchema => {
    const out: JsonSchema = {};
    if (!isSchema(schema)) return { default: { description: 'answer' } };
    for (const [code, response] of Object.entries(schema)) {
      if (!isSchema(response)) continue;
      const description = typeof response.description === 'string' ? response.description : (STATUS_CODES[Number(code)] ?? code);
      if (isSchema(response.content)) {
        const content = Object.fromEntries(
          Object.entries(response.content).map(([type, media]) => [type, { schema: hoist(isSchema(media) ? media.schema : {}) }]),
        );
        out[code] = { description, content };
      } else {
        const { description: _ignored, ...rest } = response;
        out[code] = { description, content: { 'application/json': { schema: hoist(rest) } } };
      }
    }
    return out;
  };

  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const route of routes) {
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const operation: JsonSchema = {};
    for (const key of ['summary', 'description', 'tags', 'operationId'] as const) {
      if (route.schema[key] !== undefined) operation[key] = route.schema[key];
    }
    const params = [...parameters(route.schema.params, 'path'), ...parameters(route.schema.querystring, 'query')];
    if (params.length > 0) operation.parameters = params;
    if (route.schema.body !== undefined) {
      operation.requestBody = { required: true, content: { 'application/json': { schema: hoist(route.schema.body) } } };
    }
    operation.responses = responses(route.schema.response);
    (paths[path] ??= {})[route.method.toLowerCase()] = operation;
  }

  return {
    openapi: '3.0.3',
    info: {
      title: info.title,
      version: info.version,
      description:
        'The xlb-agent REST API. On the unix socket (mode 0600) no token is needed; the TCP listener ' +
        '(--api-addr) requires "Authorization: Bearer <token>" on every request.',
    },
    paths,
    components: {
      schemas: components,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'TCP listener only' } },
    },
    security: [{}, { bearer: [] }],
  };
}

export interface OpenApiOptions {
  routes: readonly CollectedRoute[];
  version: string;
}

export const openApiRoutes: FastifyPluginAsync<OpenApiOptions> = async (app, options) => {
  let document: JsonSchema | undefined;
  app.get(
    '/v1/openapi.json',
    {
      schema: {
        summary: 'This document',
        tags: ['meta'],
        response: { 200: { description: 'the OpenAPI 3.0 document', type: 'object', additionalProperties: true }, ...errorResponses() },
      },
    },
    async () => (document ??= openApiDocument(options.routes, { title: 'xlb-agent', version: options.version })),
  );
};
