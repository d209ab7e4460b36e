/**
 * Environment variable references in configuration values.
 *
 * `${NAME}` is replaced by the variable's value, and `${NAME:-default}` by the default
 * when the variable is unset or empty. `$${` stands for a literal `${`. Any other `$`
 * is kept as written, so `$NAME` without braces is not a reference. A default is used
 * as written, and cannot contain `}` or another reference. `${file:/path}` is replaced
 * by the content of that file without its trailing line break, for secrets mounted as
 * files.
 */

import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';

import type { PathSegment, Problem } from './problems.js';

type Environment = Readonly<Record<string, string | undefined>>;

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Maximum length of file text that an error message repeats. */
const MAX_EXCERPT_LENGTH = 40;

export interface ExpandedString {
  readonly value: string;
  /** One message per reference that could not be expanded; empty on success. */
  readonly errors: readonly string[];
}

export interface SubstitutedTree {
  /** The input with every string expanded; strings with errors are kept as written. */
  readonly value: unknown;
  readonly problems: readonly Problem[];
}

/**
 * Expands the references in every string value of a parsed YAML tree. Mapping keys,
 * numbers and booleans are left alone. Each failed reference becomes a problem at the
 * path of its value.
 */
export function substituteVariables(
  tree: unknown,
  env: Environment,
  path: readonly PathSegment[] = [],
): SubstitutedTree {
  if (typeof tree === 'string') {
    const expanded = expandVariables(tree, env);
    return {
      value: expanded.errors.length === 0 ? expanded.value : tree,
      problems: expanded.errors.map((message) => ({ path, message })),
    };
  }

  const problems: Problem[] = [];
  if (Array.isArray(tree)) {
    const items = tree.map((item: unknown, index) => {
      const result = substituteVariables(item, env, [...path, index]);
      problems.push(...result.problems);
      return result.value;
    });
    return { value: items, problems };
  }

  if (tree !== null && typeof tree === 'object') {
    const entries = Object.entries(tree).map(([key, item]: [string, unknown]) => {
      const result = substituteVariables(item, env, [...path, key]);
      problems.push(...result.problems);
      return [key, result.value] as const;
    });
    return { value: Object.fromEntries(entries), problems };
  }

  return { value: tree, problems };
}

/** Expands the references in one string. Error messages never contain a variable's value. */
export function expandVariables(text: string, env: Environment): ExpandedString {
  const errors: string[] = [];
  let value = '';
  let position = 0;

  while (position < text.length) {
    const dollar = text.indexOf('$', position);
    if (dollar === -1) {
      value += text.slice(position);
      break;
    }
    value += text.slice(position, dollar);

    if (text.startsWith('$${', dollar)) {
      value += '${';
      position = dollar + 3;
      continue;
    }
    if (!text.startsWith('${', dollar)) {
      value += '$';
      position = dollar + 1;
      continue;
    }

    const close = text.indexOf('}', dollar + 2);
    if (close === -1) {
      errors.push(
        `unclosed variable reference '${excerpt(text.slice(dollar))}'; end it with } or write $\${ for a literal \${`,
      );
      break;
    }

    const resolved = resolveReference(text.slice(dollar + 2, close), env);
    if (resolved.ok) {
      value += resolved.value;
    } else {
      errors.push(resolved.error);
    }
    position = close + 1;
  }

  return { value, errors };
}

type Resolution = { ok: true; value: string } | { ok: false; error: string };

/** Resolves the text between `${` and `}`. */
function resolveReference(body: string, env: Environment): Resolution {
  if (body.startsWith(FILE_PREFIX)) return readSecretFile(body.slice(FILE_PREFIX.length));
  const separator = body.indexOf(':-');
  const name = separator === -1 ? body : body.slice(0, separator);
  const fallback = separator === -1 ? undefined : body.slice(separator + 2);

  if (!VARIABLE_NAME.test(name)) {
    return {
      ok: false,
      error: `invalid variable reference '\${${excerpt(body)}}'; write \${NAME} or \${NAME:-default}, where NAME contains only letters, digits and _ and does not start with a digit`,
    };
  }
  if (fallback?.includes('${')) {
    return {
      ok: false,
      error: `the default of \${${name}:-...} contains another reference, which is not supported; write the default as plain text`,
    };
  }

  const current = Object.hasOwn(env, name) ? env[name] : undefined;
  if (typeof current === 'string' && current !== '') {
    return { ok: true, value: current };
  }
  if (fallback !== undefined) {
    return { ok: true, value: fallback };
  }

  const problem = current === '' ? 'is empty; set a value' : 'is not set; export it';
  return {
    ok: false,
    error: `environment variable ${name} ${problem} or write \${${name}:-value}`,
  };
}

/** Prefix of a reference to a file's content, such as a Kubernetes secret mounted as a file. */
const FILE_PREFIX = 'file:';

/**
 * Returns the content of a secret file without its trailing line break. The content is
 * never part of a message, because it is a secret.
 */
function readSecretFile(path: string): Resolution {
  if (!isAbsolute(path)) {
    return { ok: false, error: `invalid file reference '\${file:${excerpt(path)}}'; write an absolute path such as \${file:/etc/walhook/password}` };
  }
  try {
    const content = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    if (content === '') return { ok: false, error: `file ${path} is empty; write the secret into it` };
    return { ok: true, value: content };
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'error';
    return { ok: false, error: `cannot read file ${path} (${code}); mount the secret there or fix the path` };
  }
}

function excerpt(text: string): string {
  return text.length <= MAX_EXCERPT_LENGTH ? text : `${text.slice(0, MAX_EXCERPT_LENGTH)}...`;
}
