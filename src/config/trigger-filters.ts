/**
 * Schemas of the per-trigger filter and shaping keys (`columns`, `where`, `payload`,
 * `transform`) and of webhook URL templates, and their normalization. schema.ts adds
 * them to the trigger and webhook schemas.
 */
import * as z from 'zod';

import { checkTransformExpression } from '../filters/transform.js';
import { InvalidUrlTemplateError, parseUrlTemplate } from '../filters/url-template.js';
import { MAX_IDENTIFIER_BYTES } from './identifier.js';
import type { TriggerFilterConfig } from './types.js';
import { whereSchema } from './where.js';

/** Returns the schema of a list of column names, which match exactly and case-sensitively. */
function columnListSchema() {
  return z
    .array(
      z.string().check((context) => {
        const name = context.value;
        if (name === '' || name.includes('\0') || Buffer.byteLength(name, 'utf8') > MAX_IDENTIFIER_BYTES) {
          context.issues.push({
            code: 'custom',
            input: name,
            message: `invalid column name; use 1 to ${MAX_IDENTIFIER_BYTES} bytes without the NUL character, exactly as the table names it`,
          });
        }
      }),
    )
    .min(1, { error: 'list at least one column, or remove the key' })
    .superRefine(
      (columns, context) => {
        columns.forEach((column, index) => {
          if (columns.indexOf(column) !== index) {
            context.addIssue({ code: 'custom', path: [index], message: `duplicate column '${column}'` });
          }
        });
      },
      { when: (payload) => Array.isArray(payload.value) },
    );
}

export const payloadSchema = z.strictObject({
  /** Columns delivered in `old` and `new`. Required when `payload` is set. */
  columns: columnListSchema(),
});

export const transformSchema = z.strictObject({
  /** JSONata expression that builds the request body from the envelope. Required when `transform` is set. */
  body: z.string().superRefine((expression, context) => {
    const message = checkTransformExpression(expression);
    if (message !== undefined) {
      context.addIssue({ code: 'custom', message });
    }
  }),
});

/** Trigger keys that filter and shape events. All are optional. */
export const triggerFilterShape = {
  /** Update triggers fire only when one of these columns changed. Needs REPLICA IDENTITY FULL. */
  columns: columnListSchema().optional(),
  /** Row condition on `new` (insert, update) or `old` (delete). */
  where: whereSchema.optional(),
  /** Subset of columns delivered. */
  payload: payloadSchema.optional(),
  /** Request body built by a JSONata expression. */
  transform: transformSchema.optional(),
};

/**
 * Rejects `columns` on a trigger whose operations do not include update, because the
 * option filters updates only. Runs on the partly parsed trigger, so it also reports
 * when other keys are invalid.
 */
export function checkColumnsNeedUpdate(
  trigger: { readonly operations?: unknown; readonly columns?: unknown },
  context: z.RefinementCtx,
): void {
  const operations = trigger.operations;
  if (trigger.columns === undefined || !Array.isArray(operations) || operations.includes('update')) {
    return;
  }
  context.addIssue({
    code: 'custom',
    path: ['columns'],
    message: "columns filters update events only, but operations does not include 'update'; add update or remove columns",
  });
}

/**
 * The webhook URL, which may contain `{{ path }}` placeholders. The message repeats
 * the URL, because a URL that fails to parse is no secret.
 */
export const webhookUrlSchema = z.string().superRefine((url, context) => {
  try {
    parseUrlTemplate(url);
  } catch (error) {
    if (!(error instanceof InvalidUrlTemplateError)) {
      throw error;
    }
    const message = url.includes('{{') ? error.message : 'must be an http(s) URL';
    context.addIssue({ code: 'custom', message: `${message}, got '${url}'` });
  }
});

/** Copies the filter keys a trigger has, leaving out absent ones so that configs without them stay unchanged. */
export function normalizeTriggerFilters(trigger: {
  readonly columns?: readonly string[] | undefined;
  readonly where?: TriggerFilterConfig['where'];
  readonly payload?: { readonly columns: readonly string[] } | undefined;
  readonly transform?: { readonly body: string } | undefined;
}): TriggerFilterConfig {
  return {
    ...(trigger.columns === undefined ? {} : { columns: trigger.columns }),
    ...(trigger.where === undefined ? {} : { where: trigger.where }),
    ...(trigger.payload === undefined ? {} : { payload: { columns: trigger.payload.columns } }),
    ...(trigger.transform === undefined ? {} : { transform: { body: trigger.transform.body } }),
  };
}
