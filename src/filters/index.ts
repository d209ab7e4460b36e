/** Per-trigger filters and shaping: `columns`, `where`, `payload`, `transform` and URL templates. */
export {
  changedColumns,
  replicaIdentityFullStatement,
  requiresFullIdentity,
  tablesRequiringFullIdentity,
} from './changed-columns.js';
export { type BaseTypeLookup, baseTypesFrom } from './column-values.js';
export { type ColumnProjection, projectColumns } from './projection.js';
export { BodyTransform, TransformError, TRANSFORM_MAX_DEPTH, TRANSFORM_TIMEOUT_MS } from './transform.js';
export { conditionRowOf, TriggerFilter, type TriggerFilterOptions } from './trigger-filter.js';
export { parseUrlTemplate, renderUrl, UrlRenderError, type UrlTemplate } from './url-template.js';
export {
  CompiledWhere,
  compileWhere,
  type ConditionColumn,
  type ConditionRow,
  type WhereOptions,
  type WhereResult,
} from './where.js';
export type { WhereCondition, WhereOperand } from './where-condition.js';
