/**
 * Matches changes to triggers by table and operation.
 */
import type { Operation, TriggerConfig } from '../config/types.js';
import type { ChangeOp } from './change.js';

const OPERATION_OF: Record<ChangeOp, Operation> = {
  INSERT: 'insert',
  UPDATE: 'update',
  DELETE: 'delete',
  TRUNCATE: 'truncate',
};

function tableKey(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}

export class Router {
  readonly #byTable = new Map<string, TriggerConfig[]>();

  constructor(triggers: readonly TriggerConfig[]) {
    for (const trigger of triggers) {
      const key = tableKey(trigger.table.schema, trigger.table.name);
      const list = this.#byTable.get(key) ?? [];
      list.push(trigger);
      this.#byTable.set(key, list);
    }
  }

  /** Returns the triggers that fire for `op` on the table, in configuration order. */
  match(schema: string, name: string, op: ChangeOp): TriggerConfig[] {
    const triggers = this.#byTable.get(tableKey(schema, name));
    if (triggers === undefined) return [];
    const operation = OPERATION_OF[op];
    return triggers.filter((trigger) => trigger.operations.includes(operation));
  }
}
