/**
 * Compares the ledger of committed changes with what each webhook received.
 */
import type { LedgerEntry } from './load.js';
import type { WebhookDeliveries } from './receiver.js';

/** Largest number of example keys listed for each kind of problem. */
const EXAMPLE_LIMIT = 10;

export interface WebhookCounts {
  /** Changes in the ledger; every webhook receives all of them. */
  readonly committed: number;
  /** Committed changes that arrived at least once with a 2xx response. */
  readonly delivered: number;
  /** Committed changes that never arrived with a 2xx response. Must be 0. */
  readonly lost: number;
  /** 2xx deliveries beyond the first, summed over event ids. */
  readonly duplicated: number;
  /** Delivered changes that are not in the ledger, such as rolled-back ones. Must be 0. */
  readonly phantom: number;
  /** Changes that arrived under more than one event id, so receivers cannot drop the repeat. Must be 0. */
  readonly eventIdConflicts: number;
  /** Delivered changes whose table differs from the ledger's. Must be 0. */
  readonly wrongTable: number;
  /**
   * Pairs of consecutive changes of one row whose first deliveries arrived in the wrong
   * order, per table. walhook promises row order (`ordering: row`), so this must be 0.
   */
  readonly orderViolations: Readonly<Record<string, number>>;
  /** Event bodies without the chaos tables' columns. Must be 0. */
  readonly malformed: number;
  readonly requests: number;
  readonly examples: {
    readonly lost: readonly LedgerEntry[];
    readonly phantom: readonly string[];
    readonly eventIdConflicts: readonly string[];
    readonly orderViolations: readonly string[];
  };
}

/** Counts delivered, lost and duplicated changes of one webhook. */
export function countWebhook(ledger: readonly LedgerEntry[], deliveries: WebhookDeliveries): WebhookCounts {
  const inLedger = new Map<string, LedgerEntry>();
  for (const entry of ledger) inLedger.set(entry.changeKey, entry);

  const lost: LedgerEntry[] = [];
  let delivered = 0;
  let wrongTable = 0;
  for (const entry of ledger) {
    if (!deliveries.hasChange(entry.changeKey)) {
      lost.push(entry);
      continue;
    }
    delivered += 1;
    if (deliveries.tableByChange.get(entry.changeKey) !== entry.table) wrongTable += 1;
  }

  const phantom: string[] = [];
  for (const changeKey of deliveries.firstDeliveryByChange.keys()) {
    if (!inLedger.has(changeKey)) phantom.push(changeKey);
  }

  const conflicts: string[] = [];
  for (const [changeKey, ids] of deliveries.eventIdsByChange) {
    if (ids.size > 1) conflicts.push(`${changeKey}: ${[...ids].join(', ')}`);
  }

  const order = findOrderViolations(ledger, deliveries);
  return {
    committed: ledger.length,
    delivered,
    lost: lost.length,
    duplicated: deliveries.duplicated,
    phantom: phantom.length,
    eventIdConflicts: conflicts.length,
    wrongTable,
    orderViolations: countByTable(order),
    malformed: deliveries.malformed,
    requests: deliveries.requests,
    examples: {
      lost: lost.slice(0, EXAMPLE_LIMIT),
      phantom: phantom.slice(0, EXAMPLE_LIMIT),
      eventIdConflicts: conflicts.slice(0, EXAMPLE_LIMIT),
      orderViolations: order.slice(0, EXAMPLE_LIMIT).map((violation) => violation.description),
    },
  };
}

interface OrderViolation {
  readonly table: string;
  readonly description: string;
}

function countByTable(violations: readonly OrderViolation[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const violation of violations) counts[violation.table] = (counts[violation.table] ?? 0) + 1;
  return counts;
}

/**
 * Returns each pair of consecutive changes of one row whose first deliveries are out
 * of commit order. A row's inserts and updates are in `rev` order, and its delete, if
 * any, comes last.
 */
function findOrderViolations(ledger: readonly LedgerEntry[], deliveries: WebhookDeliveries): OrderViolation[] {
  const changesByRow = new Map<string, { table: string; key: string; order: bigint }[]>();
  for (const entry of ledger) {
    const row = `${entry.table}/${entry.rowId}`;
    const order = entry.op === 'DELETE' ? BigInt(Number.MAX_SAFE_INTEGER) : BigInt(entry.changeKey.slice(1));
    let changes = changesByRow.get(row);
    if (changes === undefined) {
      changes = [];
      changesByRow.set(row, changes);
    }
    changes.push({ table: entry.table, key: entry.changeKey, order });
  }

  const violations: OrderViolation[] = [];
  for (const [row, changes] of changesByRow) {
    changes.sort(compareOrder);
    let previous: { key: string; position: number } | undefined;
    for (const change of changes) {
      const position = deliveries.firstDeliveryByChange.get(change.key);
      if (position === undefined) continue;
      if (previous !== undefined && position < previous.position) {
        violations.push({ table: change.table, description: `${row}: ${change.key} arrived before ${previous.key}` });
      }
      previous = { key: change.key, position };
    }
  }
  return violations;
}

function compareOrder(a: { order: bigint }, b: { order: bigint }): number {
  if (a.order < b.order) return -1;
  if (a.order > b.order) return 1;
  return 0;
}

/** Returns true when every committed change reached every webhook. */
export function allDelivered(ledger: readonly LedgerEntry[], webhooks: readonly WebhookDeliveries[]): boolean {
  return ledger.every((entry) => webhooks.every((deliveries) => deliveries.hasChange(entry.changeKey)));
}

/**
 * Names the problems in `counts`. Failures fail the run. Warnings are reported
 * without failing it.
 */
export function countProblems(webhook: string, counts: WebhookCounts): { failures: string[]; warnings: string[] } {
  const failures: string[] = [];
  const warnings: string[] = [];
  const check = (list: string[], value: number, description: string): void => {
    if (value > 0) list.push(`${webhook}: ${value} ${description}`);
  };
  check(failures, counts.lost, 'committed change(s) lost');
  check(failures, counts.phantom, 'delivered change(s) that were never committed');
  check(failures, counts.eventIdConflicts, 'change(s) delivered under more than one event id');
  check(failures, counts.wrongTable, 'change(s) delivered with the wrong table name');
  check(failures, counts.malformed, 'event body/bodies without the expected columns');
  for (const [table, violations] of Object.entries(counts.orderViolations)) {
    check(failures, violations, `row order violation(s) on ${table}`);
  }
  return { failures, warnings };
}
