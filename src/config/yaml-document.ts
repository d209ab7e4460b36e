/**
 * YAML reading for the configuration file: syntax errors with line and column, and
 * the file positions used to list problems in file order.
 */

import { type Document, LineCounter, parseDocument, type YAMLError } from 'yaml';

import type { PathSegment, Problem } from './problems.js';

export type ReadResult =
  | { readonly ok: true; readonly document: Document; readonly tree: unknown }
  | { readonly ok: false; readonly problems: readonly Problem[] };

/**
 * Parses one YAML 1.2 document into plain values. Merge keys (`<<: *anchor`) are
 * supported. Syntax errors, warnings such as an unknown tag, and an empty file are
 * returned as problems.
 */
export function readYamlDocument(text: string): ReadResult {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, merge: true, prettyErrors: false });

  const findings = [...document.errors, ...document.warnings];
  if (findings.length > 0) {
    return { ok: false, problems: findings.map((finding) => describeYamlError(finding, lineCounter)) };
  }

  let tree: unknown;
  try {
    // toJS raises an error when aliases expand too far, which guards against alias bombs.
    tree = document.toJS();
  } catch (error) {
    if (!(error instanceof Error)) {
      throw error;
    }
    return { ok: false, problems: [{ path: [], message: `invalid YAML: ${error.message}` }] };
  }

  if (tree === null || tree === undefined) {
    return {
      ok: false,
      problems: [{ path: [], message: 'the file is empty; define at least source, webhooks and triggers' }],
    };
  }
  return { ok: true, document, tree };
}

function describeYamlError(error: YAMLError, lineCounter: LineCounter): Problem {
  const { line, col } = lineCounter.linePos(error.pos[0]);
  const detail =
    error.code === 'MULTIPLE_DOCS'
      ? "the file contains more than one YAML document; remove the '---' separator"
      : error.message;
  return { path: [], message: `invalid YAML at line ${line}, column ${col}: ${detail}` };
}

/**
 * Sorts problems by where their path starts in the file, so the report reads from top
 * to bottom. A path that does not exist in the file, such as a missing key, sorts at
 * its nearest existing parent. The sort is stable.
 */
export function sortByPosition(problems: readonly Problem[], document: Document): Problem[] {
  const positioned = problems.map((problem) => ({ problem, offset: findOffset(document, problem.path) }));
  positioned.sort((a, b) => a.offset - b.offset);
  return positioned.map((entry) => entry.problem);
}

function findOffset(document: Document, path: readonly PathSegment[]): number {
  for (let length = path.length; length > 0; length -= 1) {
    const node: unknown = document.getIn(path.slice(0, length), true);
    const offset = rangeStart(node);
    if (offset !== undefined) {
      return offset;
    }
  }
  return 0;
}

function rangeStart(node: unknown): number | undefined {
  if (node === null || typeof node !== 'object' || !('range' in node)) {
    return undefined;
  }
  const range: unknown = node.range;
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : undefined;
}
