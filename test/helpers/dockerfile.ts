/**
 * A reader for the subset of Dockerfile and .dockerignore syntax that walhook's own
 * files use, so that a test can check their structure and replay their build steps
 * without a Docker engine. It follows the Dockerfile reference: parser directives,
 * `#` comments, `\` line continuations, global ARGs in FROM, exec (JSON) and shell forms,
 * and `--flag=value` options before the arguments.
 */

/** One Dockerfile instruction after joining its continuation lines. */
export interface Instruction {
  /** Upper-case keyword, such as `RUN` or `COPY`. */
  readonly keyword: string;
  /** `--name=value` options that precede the arguments, such as `from` or `mount`. */
  readonly flags: ReadonlyMap<string, string[]>;
  /** Text after the keyword and flags. */
  readonly text: string;
  /** The parsed JSON array of the exec form, or undefined for the shell form. */
  readonly execForm: readonly string[] | undefined;
  /** 1-based line where the instruction starts. */
  readonly line: number;
}

/** One build stage, from its FROM instruction up to the next one. */
export interface Stage {
  /** Image reference after global ARG substitution, such as `node:20-bookworm-slim`. */
  readonly base: string;
  /** Name given with `AS`, or undefined. */
  readonly name: string | undefined;
  readonly index: number;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  /** Parser directives from the first lines, such as `syntax`. */
  readonly directives: ReadonlyMap<string, string>;
  /** Global ARGs declared before the first FROM, with their defaults. */
  readonly globalArgs: ReadonlyMap<string, string | undefined>;
  readonly stages: readonly Stage[];
}

/** Parses Dockerfile text. Throws on an instruction outside a stage other than ARG. */
export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split('\n');
  const directives = readDirectives(lines);
  const instructions = joinInstructions(lines);

  const globalArgs = new Map<string, string | undefined>();
  const stages: Stage[] = [];
  let current: { base: string; name: string | undefined; instructions: Instruction[] } | undefined;

  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const [image, as, name] = instruction.text.split(/\s+/);
      if (image === undefined || (as !== undefined && (as.toUpperCase() !== 'AS' || name === undefined))) {
        throw new Error(`line ${instruction.line}: cannot read FROM ${instruction.text}`);
      }
      current = { base: substituteArgs(image, globalArgs), name, instructions: [] };
      stages.push({ ...current, index: stages.length });
      continue;
    }
    if (current === undefined) {
      if (instruction.keyword !== 'ARG') {
        throw new Error(`line ${instruction.line}: ${instruction.keyword} before the first FROM`);
      }
      const [name, defaultValue] = splitOnce(instruction.text, '=');
      globalArgs.set(name.trim(), defaultValue);
      continue;
    }
    current.instructions.push(instruction);
  }
  return { directives, globalArgs, stages };
}

/** Returns the stage called `reference`, by name or by index. */
export function findStage(dockerfile: Dockerfile, reference: string): Stage | undefined {
  return dockerfile.stages.find((stage) => stage.name === reference || String(stage.index) === reference);
}

/** Returns the instructions of `stage` with `keyword`. */
export function instructionsOf(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** Returns the variables that ENV instructions set in `stage`, in the `NAME=value` form. */
export function stageEnvironment(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of instructionsOf(stage, 'ENV')) {
    for (const assignment of instruction.text.split(/\s+/)) {
      const [name, value] = splitOnce(assignment, '=');
      if (value === undefined) {
        throw new Error(`line ${instruction.line}: ENV without '=' is not supported by this reader`);
      }
      env[name] = value;
    }
  }
  return env;
}

/** Splits the arguments of COPY into sources and destination. */
export function copyArguments(instruction: Instruction): { sources: string[]; destination: string } {
  const parts = instruction.execForm ?? instruction.text.split(/\s+/);
  if (parts.length < 2) {
    throw new Error(`line ${instruction.line}: COPY needs a source and a destination`);
  }
  return { sources: parts.slice(0, -1), destination: parts[parts.length - 1] as string };
}

function readDirectives(lines: readonly string[]): Map<string, string> {
  const directives = new Map<string, string>();
  for (const line of lines) {
    const match = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(line);
    if (match === null) break;
    directives.set((match[1] as string).toLowerCase(), match[2] as string);
  }
  return directives;
}

function joinInstructions(lines: readonly string[]): Instruction[] {
  const instructions: Instruction[] = [];
  let buffer = '';
  let startLine = 0;
  lines.forEach((raw, index) => {
    const line = raw.trimEnd();
    // A comment line inside a continuation is removed without ending the instruction.
    if (/^\s*#/.test(line)) return;
    if (buffer === '' && line.trim() === '') return;
    if (buffer === '') startLine = index + 1;
    if (line.endsWith('\\')) {
      buffer += `${line.slice(0, -1)} `;
      return;
    }
    buffer += line;
    instructions.push(parseInstruction(buffer.trim(), startLine));
    buffer = '';
  });
  if (buffer !== '') {
    throw new Error(`line ${startLine}: the file ends inside a continued instruction`);
  }
  return instructions;
}

function parseInstruction(source: string, line: number): Instruction {
  const [keyword, afterKeyword = ''] = splitOnce(source, ' ');
  let rest = afterKeyword.trim();
  const flags = new Map<string, string[]>();
  for (;;) {
    const flag = /^--([a-z-]+)=(\S+)\s*/.exec(rest);
    if (flag === null) break;
    const name = flag[1] as string;
    flags.set(name, [...(flags.get(name) ?? []), flag[2] as string]);
    rest = rest.slice(flag[0].length);
  }

  // HEALTHCHECK carries its command after a CMD keyword.
  const upperKeyword = keyword.toUpperCase();
  if (upperKeyword === 'HEALTHCHECK' && /^CMD\s/i.test(rest)) {
    rest = rest.replace(/^CMD\s+/i, '');
  }
  return { keyword: upperKeyword, flags, text: rest, execForm: readExecForm(rest), line };
}

function readExecForm(text: string): string[] | undefined {
  if (!text.startsWith('[')) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (Array.isArray(parsed) && parsed.every((part) => typeof part === 'string')) {
      return parsed as string[];
    }
  } catch {
    // Docker reads text that is not a JSON array of strings as the shell form.
  }
  return undefined;
}

function substituteArgs(text: string, args: ReadonlyMap<string, string | undefined>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, braced, bare) => {
    const name = (braced ?? bare) as string;
    const value = args.get(name);
    if (value === undefined) throw new Error(`ARG ${name} has no default`);
    return value;
  });
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const index = text.indexOf(separator);
  return index < 0 ? [text, undefined] : [text.slice(0, index), text.slice(index + separator.length)];
}

/**
 * Patterns of a .dockerignore file, applied as Docker applies them: the last pattern
 * that matches a path or one of its parent directories decides, and `!` re-includes.
 */
export class DockerIgnore {
  readonly #rules: { pattern: RegExp; exclude: boolean }[];

  constructor(text: string) {
    this.#rules = text
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => {
        const exclude = !line.startsWith('!');
        const pattern = (exclude ? line : line.slice(1)).replace(/^\/+/, '').replace(/\/+$/, '');
        return { pattern: globToRegExp(pattern), exclude };
      });
  }

  /** True when the build context leaves out `path`, a path relative to the context root. */
  excludes(path: string): boolean {
    const parts = path.split('/').filter((part) => part !== '' && part !== '.');
    let excluded = false;
    for (const rule of this.#rules) {
      for (let length = 1; length <= parts.length; length++) {
        if (rule.pattern.test(parts.slice(0, length).join('/'))) {
          excluded = rule.exclude;
          break;
        }
      }
    }
    return excluded;
  }
}

/** Converts a pattern in Go's filepath.Match syntax, plus `**`, to an anchored RegExp. */
function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (let index = 0; index < pattern.length; index++) {
    const char = pattern[index] as string;
    if (char === '*' && pattern[index + 1] === '*' && pattern[index + 2] === '/') {
      source += '(?:.*/)?';
      index += 2;
    } else if (char === '*' && pattern[index + 1] === '*') {
      source += '.*';
      index++;
    } else if (char === '*') {
      source += '[^/]*';
    } else if (char === '?') {
      source += '[^/]';
    } else {
      source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}
