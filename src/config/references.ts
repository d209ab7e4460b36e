/**
 * Checks that span entries: unique webhook and trigger names, triggers that name
 * a defined webhook, and trigger tables outside the dead-letter schema.
 *
 * They read the substituted tree before the schema accepts it, so that these problems
 * appear together with structural ones. Entries whose name is not a string are skipped,
 * because the schema already reports them.
 */

import { formatTableName, InvalidTableNameError, parseTableName } from './identifier.js';
import { type Problem, suggestClosest } from './problems.js';
import { DEFAULT_DEAD_LETTER_SCHEMA } from './schema.js';

interface NamedEntry {
  readonly index: number;
  readonly name: string;
}

export function checkReferences(tree: unknown): Problem[] {
  const root = asRecord(tree);
  if (root === undefined) {
    return [];
  }

  const webhooks = collectNames(root['webhooks']);
  const triggers = collectNames(root['triggers']);
  return [
    ...findDuplicateNames('webhooks', 'webhook', webhooks),
    ...findDuplicateNames('triggers', 'trigger', triggers),
    ...findUnknownWebhooks(root['triggers'], webhooks),
    ...findTablesInDeadLetterSchema(root['triggers'], root['dead_letters']),
  ];
}

/**
 * Rejects triggers on tables in the dead-letter schema. That schema belongs to
 * walhook, and streaming the dead-letter table would turn each failed delivery into
 * a new event.
 */
function findTablesInDeadLetterSchema(triggers: unknown, deadLetters: unknown): Problem[] {
  if (!Array.isArray(triggers)) {
    return [];
  }
  const deadLetterSchema = readDeadLetterSchema(deadLetters);
  if (deadLetterSchema === undefined) {
    return [];
  }

  const problems: Problem[] = [];
  triggers.forEach((trigger: unknown, index) => {
    const text = asRecord(trigger)?.['table'];
    if (typeof text !== 'string') {
      return;
    }
    let table;
    try {
      table = parseTableName(text);
    } catch (error) {
      if (error instanceof InvalidTableNameError) {
        return;
      }
      throw error;
    }
    if (table.schema === deadLetterSchema) {
      problems.push({
        path: ['triggers', index, 'table'],
        message:
          `table ${formatTableName(table)} is in the dead-letter schema '${deadLetterSchema}', which belongs to walhook; ` +
          'choose a table in another schema, or set dead_letters.schema to a schema without streamed tables',
      });
    }
  });
  return problems;
}

function findDuplicateNames(section: string, kind: string, entries: readonly NamedEntry[]): Problem[] {
  const firstIndexByName = new Map<string, number>();
  const problems: Problem[] = [];

  for (const entry of entries) {
    const firstIndex = firstIndexByName.get(entry.name);
    if (firstIndex === undefined) {
      firstIndexByName.set(entry.name, entry.index);
      continue;
    }
    problems.push({
      path: [section, entry.index, 'name'],
      message: `duplicate ${kind} name '${entry.name}', already used by ${section}[${firstIndex}]; give each ${kind} a unique name`,
    });
  }
  return problems;
}

function findUnknownWebhooks(triggers: unknown, webhooks: readonly NamedEntry[]): Problem[] {
  if (!Array.isArray(triggers)) {
    return [];
  }

  const webhookNames = [...new Set(webhooks.map((webhook) => webhook.name))];
  const problems: Problem[] = [];
  triggers.forEach((trigger: unknown, index) => {
    const webhook = asRecord(trigger)?.['webhook'];
    if (typeof webhook !== 'string' || webhookNames.includes(webhook)) {
      return;
    }
    problems.push({
      path: ['triggers', index, 'webhook'],
      message: describeUnknownWebhook(webhook, webhookNames),
    });
  });
  return problems;
}

/** Returns `dead_letters.schema` or its default, or undefined when the value is invalid. */
function readDeadLetterSchema(deadLetters: unknown): string | undefined {
  if (deadLetters === undefined) {
    return DEFAULT_DEAD_LETTER_SCHEMA;
  }
  const section = asRecord(deadLetters);
  if (section === undefined) {
    return undefined;
  }
  const schema = section['schema'];
  if (schema === undefined) {
    return DEFAULT_DEAD_LETTER_SCHEMA;
  }
  return typeof schema === 'string' ? schema : undefined;
}

function describeUnknownWebhook(webhook: string, webhookNames: readonly string[]): string {
  if (webhookNames.length === 0) {
    return `no webhook named '${webhook}'; the file defines no webhooks`;
  }

  const defined = webhookNames.join(', ');
  const suggestion = suggestClosest(webhook, webhookNames);
  if (suggestion === undefined) {
    return `no webhook named '${webhook}'; defined webhooks: ${defined}`;
  }
  return `no webhook named '${webhook}'; did you mean '${suggestion}'? Defined webhooks: ${defined}`;
}

function collectNames(section: unknown): NamedEntry[] {
  if (!Array.isArray(section)) {
    return [];
  }

  const entries: NamedEntry[] = [];
  section.forEach((entry: unknown, index) => {
    const name = asRecord(entry)?.['name'];
    if (typeof name === 'string') {
      entries.push({ index, name });
    }
  });
  return entries;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return undefined;
  }
  return value as Record<string, unknown>;
}
