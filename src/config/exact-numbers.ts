/**
 * Keeps the digits of numbers in `where:` conditions as written in the file. YAML
 * numbers become JavaScript doubles, which turn 9007199254740993 into
 * 9007199254740992, so the config loader swaps each number under `triggers[].where`
 * for a NumberLiteral that carries the source text.
 */
import { type Document, isScalar } from 'yaml';

/** A YAML number with the text it was written as, such as `1.10` or `9007199254740993`. */
export class NumberLiteral {
  readonly value: number;
  /** Decimal source text, or String(value) when the source was not found or not decimal. */
  readonly text: string;
  /** Whether `text` is the source text, and so has every digit as written. */
  readonly exact: boolean;

  constructor(value: number, text: string, exact: boolean) {
    this.value = value;
    this.text = text;
    this.exact = exact;
  }
}

/** YAML 1.2 decimal integer and float forms, the ones that parseDecimal reads. */
const DECIMAL_SOURCE = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;

/**
 * Returns a copy of the tree in which numbers under `triggers[i].where` are
 * NumberLiterals. `document` is the parsed YAML the tree came from. A number whose
 * node cannot be found, as behind an alias, keeps only its double value.
 */
export function keepWhereNumberText(tree: unknown, document: Document): unknown {
  if (!isRecord(tree) || !Array.isArray(tree['triggers'])) {
    return tree;
  }
  const triggers = tree['triggers'].map((trigger: unknown, index) => {
    if (!isRecord(trigger) || trigger['where'] === undefined) {
      return trigger;
    }
    const where = replaceNumbers(trigger['where'], ['triggers', index, 'where'], document);
    return { ...trigger, where };
  });
  return { ...tree, triggers };
}

function replaceNumbers(value: unknown, path: readonly (string | number)[], document: Document): unknown {
  if (typeof value === 'number') {
    const source = findSourceText(value, path, document);
    return source === undefined ? new NumberLiteral(value, String(value), false) : new NumberLiteral(value, source, true);
  }
  if (Array.isArray(value)) {
    return value.map((item: unknown, index) => replaceNumbers(item, [...path, index], document));
  }
  if (isRecord(value)) {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      // defineProperty keeps a key named __proto__ an ordinary key.
      Object.defineProperty(copy, key, {
        value: replaceNumbers(item, [...path, key], document),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return copy;
  }
  return value;
}

function findSourceText(value: number, path: readonly (string | number)[], document: Document): string | undefined {
  const node: unknown = document.getIn(path, true);
  if (isScalar(node) && node.value === value && typeof node.source === 'string' && DECIMAL_SOURCE.test(node.source)) {
    return node.source;
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
