/**
 * Checks that span entries: unique webhook and trigger names, and triggers that name
 * a defined webhook.
 *
 * They read the substituted tree before the schema accepts it, so that these problems
 * appear together with structural ones. Entries whose name is not a string are skipped,
 * because the schema already reports them.
 */

import { type Problem, suggestClosest } from './problems.js';

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
  ];
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
