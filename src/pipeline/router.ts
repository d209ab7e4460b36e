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

type TriggersByOp = Readonly<Record<ChangeOp, readonly TriggerConfig[]>>;

const NONE: readonly TriggerConfig[] = [];

export class Router {
  /** Triggers by schema, then table, then operation, each list in configuration order. */
  readonly #bySchema = new Map<string, Map<string, TriggersByOp>>();

  constructor(triggers: readonly TriggerConfig[]) {
    const lists = new Map<string, Map<string, TriggerConfig[]>>();
    for (const trigger of triggers) {
      let tables = lists.get(trigger.table.schema);
      if (tables === undefined) {
        tables = new Map();
        lists.set(trigger.table.schema, tables);
      }
      const list = tables.get(trigger.table.name) ?? [];
      list.push(trigger);
      tables.set(trigger.table.name, list);
    }
    for (const [schema, tables] of lists) {
      const byTable = new Map<string, TriggersByOp>();
      for (const [name, list] of tables) {
        const byOp = (op: ChangeOp): TriggerConfig[] =>
          list.filter((trigger) => trigger.operations.includes(OPERATION_OF[op]));
        byTable.set(name, { INSERT: byOp('INSERT'), UPDATE: byOp('UPDATE'), DELETE: byOp('DELETE'), TRUNCATE: byOp('TRUNCATE') });
      }
      this.#bySchema.set(schema, byTable);
    }
  }

  /** Returns the triggers that fire for `op` on the table, in configuration order. */
  match(schema: string, name: string, op: ChangeOp): readonly TriggerConfig[] {
    return this.#bySchema.get(schema)?.get(name)?.[op] ?? NONE;
  }
}
