/**
 * Summarizes a V8 CPU profile written by `node --cpu-prof`: self and total time per
 * function and self time per source file, as shares of the busy (non-idle) time. It
 * also writes the samples as folded stacks (`frame;frame;frame count`), the input
 * format of flame graph tools such as flamegraph.pl and speedscope.
 */
import { readFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { SourceMap } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { REPO_ROOT } from './walhook-runner.js';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  /** 0-based. */
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  /** Microseconds between consecutive samples. */
  readonly timeDeltas: readonly number[];
}

export interface FunctionCost {
  readonly name: string;
  /** `src/pipeline/envelope.ts:42`, `node_modules/pg/...`, `node:internal/...` or `(native)`. */
  readonly location: string;
  /** Share of busy time spent in the function itself. */
  readonly selfShare: number;
  /** Share of busy time with the function anywhere on the stack. */
  readonly totalShare: number;
}

export interface FileCost {
  readonly file: string;
  readonly selfShare: number;
}

export interface ProfileSummary {
  readonly label: string;
  readonly drainSeconds: number;
  readonly eventsPerSecond: number;
  readonly profileFile: string;
  readonly foldedFile: string;
  /** Sampled time that was not idle, in ms. */
  readonly busyMs: number;
  /** Share of the sampled time in which the event loop waited for I/O. */
  readonly idleShare: number;
  readonly topFunctions: FunctionCost[];
  readonly files: FileCost[];
}

const TOP_FUNCTIONS = 25;
const TOP_FILES = 20;

/** Names V8 gives to samples that run no JavaScript function. */
const IDLE = '(idle)';

/**
 * Summarizes the one .cpuprofile in `directory`. Samples from the first `skipSeconds`
 * after the process started are left out, so that loading modules and connecting do
 * not count as drain work.
 */
export async function summarizeCpuProfile(
  directory: string,
  label: string,
  drain: { drainSeconds: number; eventsPerSecond: number; skipSeconds: number },
): Promise<ProfileSummary> {
  const files = (await readdir(directory)).filter((name) => name.endsWith('.cpuprofile'));
  if (files.length !== 1) {
    throw new Error(`expected one .cpuprofile in ${directory}, found ${files.length}: is --cpu-prof written on exit?`);
  }
  const profileFile = join(directory, files[0]!);
  const profile = JSON.parse(await readFile(profileFile, 'utf8')) as CpuProfile;
  const locator = new SourceLocator();

  const parents = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parents.set(child, node.id);
  }

  const selfMicros = new Map<string, number>();
  const totalMicros = new Map<string, number>();
  const fileMicros = new Map<string, number>();
  const folded = new Map<string, number>();
  const functionInfo = new Map<string, { name: string; location: string }>();
  let busyMicros = 0;
  let idleMicros = 0;
  let elapsedMicros = 0;
  const skipMicros = drain.skipSeconds * 1e6;

  for (let i = 0; i < profile.samples.length; i++) {
    // V8 stores the time before sample i in timeDeltas[i]; the next delta is the time
    // the sample stands for, so the last sample is attributed no time.
    elapsedMicros += profile.timeDeltas[i] ?? 0;
    const micros = profile.timeDeltas[i + 1] ?? 0;
    const leaf = byId.get(profile.samples[i]!);
    if (leaf === undefined || micros <= 0 || elapsedMicros < skipMicros) continue;
    if (leaf.callFrame.functionName === IDLE) {
      idleMicros += micros;
      continue;
    }
    busyMicros += micros;

    const stack: ProfileNode[] = [];
    for (let node: ProfileNode | undefined = leaf; node !== undefined; node = byId.get(parents.get(node.id) ?? -1)) {
      stack.push(node);
    }
    stack.reverse();
    // The root node is '(root)' and carries no information.
    const frames = stack.filter((node) => node.callFrame.functionName !== '(root)');

    const seen = new Set<string>();
    const frameNames: string[] = [];
    for (const node of frames) {
      const location = locator.locate(node.callFrame);
      const name = node.callFrame.functionName || '(anonymous)';
      const key = `${name} ${location}`;
      functionInfo.set(key, { name, location });
      frameNames.push(`${name} ${location}`.replaceAll(';', ','));
      if (!seen.has(key)) {
        seen.add(key);
        totalMicros.set(key, (totalMicros.get(key) ?? 0) + micros);
      }
      if (node === leaf) {
        selfMicros.set(key, (selfMicros.get(key) ?? 0) + micros);
        const file = fileOf(location);
        fileMicros.set(file, (fileMicros.get(file) ?? 0) + micros);
      }
    }
    const foldedKey = frameNames.join(';');
    folded.set(foldedKey, (folded.get(foldedKey) ?? 0) + micros);
  }

  const foldedFile = join(directory, `${label}.folded`);
  const foldedLines = [...folded.entries()].map(([stack, micros]) => `${stack} ${micros}`);
  await writeFile(foldedFile, `${foldedLines.join('\n')}\n`);

  const share = (micros: number): number => (busyMicros > 0 ? micros / busyMicros : 0);
  const topFunctions = [...selfMicros.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP_FUNCTIONS)
    .map(([key, micros]) => ({
      name: functionInfo.get(key)!.name,
      location: functionInfo.get(key)!.location,
      selfShare: share(micros),
      totalShare: share(totalMicros.get(key) ?? 0),
    }));
  const fileCosts = [...fileMicros.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP_FILES)
    .map(([file, micros]) => ({ file, selfShare: share(micros) }));

  return {
    label,
    drainSeconds: drain.drainSeconds,
    eventsPerSecond: drain.eventsPerSecond,
    profileFile: relative(REPO_ROOT, profileFile),
    foldedFile: relative(REPO_ROOT, foldedFile),
    busyMs: busyMicros / 1000,
    idleShare: busyMicros + idleMicros > 0 ? idleMicros / (busyMicros + idleMicros) : 0,
    topFunctions,
    files: fileCosts,
  };
}

/** Groups a location by file: the source file, the npm package, or the kind of frame. */
function fileOf(location: string): string {
  if (location.startsWith('node_modules/')) {
    const parts = location.split('/');
    const packageName = parts[1]?.startsWith('@') ? `${parts[1]}/${parts[2]}` : parts[1];
    return `node_modules/${packageName}`;
  }
  return location.replace(/:\d+$/, '');
}

/**
 * Turns a call frame into a short location. Frames in dist/ are mapped back to
 * src/*.ts through the compiler's source maps.
 */
class SourceLocator {
  readonly #maps = new Map<string, SourceMap | null>();

  locate(frame: CallFrame): string {
    const url = frame.url;
    if (url === '') return '(native)';
    if (url.startsWith('node:')) return url;
    const path = url.startsWith('file://') ? fileURLToPath(url) : url;
    const relativePath = relative(REPO_ROOT, path);
    if (relativePath.startsWith('dist/')) {
      const mapped = this.#mapToSource(path, frame);
      if (mapped !== undefined) return mapped;
    }
    if (relativePath.startsWith('node_modules/')) return relativePath;
    return `${relativePath}:${frame.lineNumber + 1}`;
  }

  #mapToSource(path: string, frame: CallFrame): string | undefined {
    let map = this.#maps.get(path);
    if (map === undefined) {
      map = loadSourceMap(`${path}.map`);
      this.#maps.set(path, map);
    }
    if (map === null) return undefined;
    const entry = map.findEntry(frame.lineNumber, frame.columnNumber) as {
      originalSource?: string;
      originalLine?: number;
    };
    if (entry.originalSource === undefined || entry.originalLine === undefined) return undefined;
    const source = entry.originalSource.startsWith('file://')
      ? fileURLToPath(entry.originalSource)
      : join(path, '..', entry.originalSource);
    return `${relative(REPO_ROOT, source)}:${entry.originalLine + 1}`;
  }
}

function loadSourceMap(mapPath: string): SourceMap | null {
  try {
    // Read synchronously once per file; a profile touches a few dozen files at most.
    return new SourceMap(JSON.parse(readFileSync(mapPath, 'utf8')));
  } catch {
    return null;
  }
}
