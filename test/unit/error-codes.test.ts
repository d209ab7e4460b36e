import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

test('error codes in src match docs/errors.md', () => {
  const inCode = new Set<string>();
  for (const file of sourceFiles(join(root, 'src'))) {
    for (const match of readFileSync(file, 'utf8').matchAll(/'(WALHOOK_[A-Z_]+)'/g)) inCode.add(match[1]!);
  }
  const docs = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const inDocs = new Set([...docs.matchAll(/^\| `(WALHOOK_[A-Z_]+)` \|/gm)].map((m) => m[1]!));

  assert.deepEqual([...inCode].filter((code) => !inDocs.has(code)).sort(), [], 'codes missing from docs');
  assert.deepEqual([...inDocs].filter((code) => !inCode.has(code)).sort(), [], 'documented codes not in src');
});
