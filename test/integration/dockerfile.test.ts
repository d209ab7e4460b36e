// The Dockerfile without a Docker engine: its structure, its .dockerignore, and a replay
// of its build steps in temporary directories that stand in for each stage's file
// system. The replay runs every RUN instruction except the apt-get install of tini,
// then starts the production stage's command with tini as PID 1 of a new PID namespace.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { after, before, describe, test } from 'node:test';
import YAML from 'yaml';

import { parseConfig } from '../../src/config/load.js';
import {
  copyArguments,
  type Dockerfile,
  DockerIgnore,
  findStage,
  type Instruction,
  instructionsOf,
  parseDockerfile,
  type Stage,
  stageEnvironment,
} from '../helpers/dockerfile.js';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { skipOrFail } from '../helpers/skip.js';
import { waitFor } from '../helpers/wait.js';
import { REPO_ROOT, WalhookProcess } from '../helpers/walhook-process.js';

const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const dockerIgnore = new DockerIgnore(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'));
const runtimeStage = dockerfile.stages[dockerfile.stages.length - 1] as Stage;

const CONFIG_PATH = '/config/walhook.yaml';
const TINI = '/usr/bin/tini';
/** Deadline for one npm ci or tsc run of the replay. A warm npm cache needs about 15 s. */
const BUILD_STEP_DEADLINE_MS = 300_000;
/** Deadline for one CLI command of the built image. */
const CLI_DEADLINE_MS = 20_000;
/** npm error codes that mean the registry could not be reached. */
const NETWORK_ERROR = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH)\b/;

function lastInstruction(stage: Stage, keyword: string): Instruction | undefined {
  return instructionsOf(stage, keyword).at(-1);
}

function runCommands(stage: Stage): string[] {
  return instructionsOf(stage, 'RUN').map((run) => run.text);
}

/** Returns the stage whose RUN instructions include `fragment`. */
function stageRunning(fragment: string): Stage | undefined {
  return dockerfile.stages.find((stage) => runCommands(stage).some((command) => command.includes(fragment)));
}

/** Returns the stage that a `COPY --from=` names, by name or index. */
function copySourceStage(instruction: Instruction): Stage | undefined {
  const from = instruction.flags.get('from')?.[0];
  return from === undefined ? undefined : findStage(dockerfile, from);
}

describe('Dockerfile structure', () => {
  test('every stage uses the Node.js 20 slim image', () => {
    assert.ok(dockerfile.stages.length >= 2, 'a multi-stage build needs at least two stages');
    for (const stage of dockerfile.stages) {
      assert.match(stage.base, /^node:20-[a-z]+-slim$/, `stage ${stage.name ?? stage.index}`);
    }
    const engines = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).engines.node as string;
    assert.equal(engines, '>=20.18', 'update the image tag when package.json engines change');
  });

  test('build stage compiles with dev dependencies', () => {
    const build = stageRunning('tsc');
    assert.ok(build !== undefined, 'no stage runs tsc');
    const install = runCommands(build).find((command) => command.includes('npm ci'));
    assert.ok(install !== undefined, 'the tsc stage runs no npm ci');
    assert.doesNotMatch(install, /--omit=dev/, 'tsc needs the dev dependencies');
    assert.match(install, /--ignore-scripts/, 'the prepare script would run tsc before src/ is copied');
    assert.notEqual(build, runtimeStage);
  });

  test('runtime stage gets production dependencies only', () => {
    const copies = instructionsOf(runtimeStage, 'COPY');
    const modules = copies.find((copy) => copyArguments(copy).destination.includes('node_modules'));
    assert.ok(modules !== undefined, 'the runtime stage copies no node_modules');
    const source = copySourceStage(modules);
    assert.ok(source !== undefined, 'node_modules must come from another stage');
    assert.ok(
      runCommands(source).some((command) => /npm ci\b.*--omit=dev\b.*--ignore-scripts\b/.test(command)),
      `stage ${source.name} must run npm ci --omit=dev --ignore-scripts`,
    );
    assert.ok(!runCommands(source).some((command) => command.includes('tsc')), 'the dependency stage compiles');

    const dist = copies.find((copy) => copyArguments(copy).sources.includes('/app/dist'));
    assert.ok(dist !== undefined, 'the runtime stage copies no /app/dist');
    assert.equal(copySourceStage(dist), stageRunning('tsc'));

    for (const copy of copies.filter((instruction) => !instruction.flags.has('from'))) {
      const { sources } = copyArguments(copy);
      assert.ok(!sources.some((path) => path.startsWith('src')), `line ${copy.line} copies TypeScript sources`);
    }
    assert.ok(!runCommands(runtimeStage).some((command) => command.includes('npm ')), 'npm runs in the runtime stage');
    assert.equal(stageEnvironment(runtimeStage).NODE_ENV, 'production');
  });

  test('runtime runs as a numeric non-root user', () => {
    const user = lastInstruction(runtimeStage, 'USER');
    assert.ok(user !== undefined, 'the runtime stage sets no USER');
    const match = /^(\d+)(?::(\d+))?$/.exec(user.text);
    assert.ok(match !== null, `USER ${user.text} must be numeric, so Kubernetes can check runAsNonRoot`);
    assert.notEqual(Number(match[1]), 0, 'USER is root');
    assert.notEqual(Number(match[2] ?? 1), 0, 'the group is root');
    const entrypoint = lastInstruction(runtimeStage, 'ENTRYPOINT');
    assert.ok(entrypoint !== undefined, 'the runtime stage sets no ENTRYPOINT');
    assert.ok(user.line < entrypoint.line, 'USER must precede ENTRYPOINT');
  });

  test('entrypoint runs tini as PID 1 and the CLI', () => {
    const entrypoint = lastInstruction(runtimeStage, 'ENTRYPOINT');
    assert.deepEqual(entrypoint?.execForm, [TINI, '--', 'node', 'dist/cli/main.js']);
    assert.ok(
      runCommands(runtimeStage).some((command) => /apt-get install\b.*\btini\b/.test(command)),
      'the runtime stage must install tini',
    );
    assert.ok(
      runCommands(runtimeStage).some((command) => command.includes('rm -rf /var/lib/apt/lists')),
      'the apt lists stay in the image',
    );
    const cmd = lastInstruction(runtimeStage, 'CMD');
    assert.deepEqual(cmd?.execForm, ['run', '--config', CONFIG_PATH]);
    assert.equal(lastInstruction(runtimeStage, 'WORKDIR')?.text, '/app');
  });

  test('default config sits at /config/walhook.yaml', () => {
    const copy = instructionsOf(runtimeStage, 'COPY').find((instruction) => copyArguments(instruction).destination === CONFIG_PATH);
    assert.ok(copy !== undefined, `nothing is copied to ${CONFIG_PATH}`);
    const [source] = copyArguments(copy).sources;
    assert.equal(source, 'config/example.yaml');
    assert.doesNotThrow(() =>
      parseConfig(readFileSync(join(REPO_ROOT, source), 'utf8'), {
        file: source,
        env: { DATABASE_URL: 'postgres://walhook@127.0.0.1/app', ORDERS_TOKEN: 'token' },
      }),
    );
  });

  test('exposed port is the default server.port', () => {
    const exposed = instructionsOf(runtimeStage, 'EXPOSE').flatMap((expose) => expose.text.split(/\s+/));
    const minimal = parseConfig(
      'source: { connection: postgres://127.0.0.1/app }\nwebhooks: [{ name: w, url: http://127.0.0.1:9/ }]\ntriggers: [{ name: t, table: t, webhook: w }]\n',
      { file: 'minimal.yaml', env: {} },
    );
    assert.deepEqual(exposed, [String(minimal.server.port)]);
  });

  test('health check requests /healthz with node', () => {
    const healthcheck = lastInstruction(runtimeStage, 'HEALTHCHECK');
    assert.ok(healthcheck?.execForm !== undefined, 'HEALTHCHECK must use the exec form');
    assert.equal(healthcheck.execForm[0], 'node', 'the slim image has no curl or wget');
    assert.ok(healthcheck.execForm.join(' ').includes('WALHOOK_HEALTHCHECK_URL'));
    assert.equal(stageEnvironment(runtimeStage).WALHOOK_HEALTHCHECK_URL, 'http://127.0.0.1:8080/healthz');
    for (const option of ['interval', 'timeout', 'start-period', 'retries']) {
      assert.ok(healthcheck.flags.has(option), `HEALTHCHECK without --${option}`);
    }
    // The request's own deadline (AbortSignal.timeout) must end before Docker's.
    const requestDeadlineMs = Number(/AbortSignal\.timeout\((\d+)\)/.exec(healthcheck.execForm.join(' '))?.[1]);
    const dockerTimeoutSeconds = Number(/^(\d+)s$/.exec(healthcheck.flags.get('timeout')?.[0] ?? '')?.[1]);
    assert.ok(requestDeadlineMs < dockerTimeoutSeconds * 1000, `${requestDeadlineMs} ms >= ${dockerTimeoutSeconds} s`);
  });

  test('dockerignore keeps exactly what COPY needs', () => {
    for (const stage of dockerfile.stages) {
      for (const copy of instructionsOf(stage, 'COPY').filter((instruction) => !instruction.flags.has('from'))) {
        for (const source of copyArguments(copy).sources) {
          assert.ok(existsSync(join(REPO_ROOT, source)), `line ${copy.line}: ${source} does not exist`);
          assert.ok(!dockerIgnore.excludes(source), `line ${copy.line}: .dockerignore excludes ${source}`);
        }
      }
    }
    assert.ok(!dockerIgnore.excludes('src/cli/main.ts'), 'files under src/ are excluded');
    for (const path of ['node_modules', 'dist/cli/main.js', '.git', 'test', '.env', 'config/demo.yaml', 'deploy']) {
      assert.ok(dockerIgnore.excludes(path), `.dockerignore lets ${path} into the build context`);
    }
  });
});

interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `command` with `args` and resolves with its status and output. */
function runCommand(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<CommandResult> {
  const env = { ...process.env, ...options.env };
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(command, args, { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not exit within ${options.timeoutMs} ms\n${stdout}\n${stderr}`));
    }, options.timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A stage's file system: `root` stands for `/`, `workdir` is the current WORKDIR. */
interface StageFiles {
  readonly root: string;
  workdir: string;
}

/** Why the replay could not run, such as an unreachable npm registry. */
class ReplayUnavailable extends Error {}

/**
 * Replays the build in temporary directories, one per stage, and returns them by stage
 * index. COPY takes files from the repository (checked against .dockerignore) or from
 * an earlier stage's directory. RUN runs in the stage's WORKDIR, except apt-get, which
 * would change this machine; `skippedRuns` receives those commands.
 */
async function replayBuild(workspace: string, skippedRuns: string[]): Promise<StageFiles[]> {
  const files: StageFiles[] = [];
  for (const stage of dockerfile.stages) {
    const root = join(workspace, `stage-${stage.index}-${stage.name ?? 'unnamed'}`);
    await mkdir(root, { recursive: true });
    const current: StageFiles = { root, workdir: '/' };
    files.push(current);
    for (const instruction of stage.instructions) {
      await replayInstruction(instruction, current, files, skippedRuns);
    }
  }
  return files;
}

async function replayInstruction(
  instruction: Instruction,
  current: StageFiles,
  files: readonly StageFiles[],
  skippedRuns: string[],
): Promise<void> {
  switch (instruction.keyword) {
    case 'WORKDIR':
      current.workdir = posix.resolve(current.workdir, instruction.text);
      await mkdir(join(current.root, current.workdir), { recursive: true });
      return;
    case 'COPY':
      await replayCopy(instruction, current, files);
      return;
    case 'RUN':
      await replayRun(instruction, current, skippedRuns);
      return;
    default:
      // ENV, USER, EXPOSE, HEALTHCHECK, ENTRYPOINT and CMD change no files.
      return;
  }
}

async function replayCopy(instruction: Instruction, current: StageFiles, files: readonly StageFiles[]): Promise<void> {
  const { sources, destination } = copyArguments(instruction);
  const from = copySourceStage(instruction);
  if (instruction.flags.has('from') && from === undefined) {
    throw new Error(`line ${instruction.line}: unknown stage ${instruction.flags.get('from')?.[0]}`);
  }
  const target = posix.resolve(current.workdir, destination);
  const intoDirectory = destination.endsWith('/') || sources.length > 1;
  for (const source of sources) {
    let sourcePath: string;
    if (from === undefined) {
      if (dockerIgnore.excludes(source)) {
        throw new Error(`line ${instruction.line}: ${source} is not in the build context`);
      }
      sourcePath = join(REPO_ROOT, source);
    } else {
      const sourceFiles = files[from.index] as StageFiles;
      sourcePath = join(sourceFiles.root, posix.resolve(sourceFiles.workdir, source));
    }
    const isDirectory = (await stat(sourcePath)).isDirectory();
    // Docker copies a directory's contents into the target, and a file into a target
    // directory under its own name.
    const targetPath = join(current.root, intoDirectory && !isDirectory ? posix.join(target, basename(source)) : target);
    await mkdir(isDirectory ? targetPath : dirname(targetPath), { recursive: true });
    await cp(sourcePath, targetPath, { recursive: true, filter: (path) => from !== undefined || !excludedFromContext(path) });
  }
}

function excludedFromContext(absolutePath: string): boolean {
  return dockerIgnore.excludes(absolutePath.slice(REPO_ROOT.length));
}

async function replayRun(instruction: Instruction, current: StageFiles, skippedRuns: string[]): Promise<void> {
  if (instruction.text.startsWith('apt-get ')) {
    skippedRuns.push(instruction.text);
    return;
  }
  const result = await runCommand('sh', ['-c', instruction.text], {
    cwd: join(current.root, current.workdir),
    // A warm npm cache then needs no request to the registry.
    env: { npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
    timeoutMs: BUILD_STEP_DEADLINE_MS,
  });
  if (result.code === 0) return;
  const output = `${result.stdout}\n${result.stderr}`;
  if (instruction.text.includes('npm ci') && NETWORK_ERROR.test(output)) {
    throw new ReplayUnavailable(`npm ci cannot reach the registry: ${NETWORK_ERROR.exec(output)?.[0]}`);
  }
  throw new Error(`line ${instruction.line}: '${instruction.text}' exited with ${result.code}\n${output}`);
}

/**
 * Maps a path inside the image to the replayed runtime stage's directory when it exists
 * there, and leaves other words, such as `node` or `--config`, unchanged.
 */
function hostArgument(runtime: StageFiles, argument: string): string {
  if (argument === 'node') return process.execPath;
  if (!argument.startsWith('/')) return argument;
  const mapped = join(runtime.root, argument);
  return existsSync(mapped) ? mapped : argument;
}

/** Returns the PID, on this host, of the first child of `pid`: PID 1 of `unshare --fork`. */
function firstChildPid(pid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return children === '' ? undefined : Number(children.split(/\s+/)[0]);
  } catch {
    return undefined;
  }
}

describe('Dockerfile build steps', () => {
  let workspace: string;
  let runtime: StageFiles;
  let unavailable: string | undefined;
  const skippedRuns: string[] = [];

  before(async () => {
    workspace = await mkdtemp(join(tmpdir(), 'walhook-docker-'));
    try {
      const stages = await replayBuild(workspace, skippedRuns);
      runtime = stages[runtimeStage.index] as StageFiles;
    } catch (error) {
      if (!(error instanceof ReplayUnavailable)) throw error;
      unavailable = error.message;
    }
  });

  after(async () => {
    await rm(workspace, { recursive: true, force: true });
  });

  /** Returns the environment of the runtime stage's commands, as its ENV instructions set it. */
  function imageEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { PATH: process.env.PATH, HOME: tmpdir(), ...stageEnvironment(runtimeStage), ...extra };
  }

  /** Runs the HEALTHCHECK command against `url` in place of the image's default URL. */
  function runImageHealthcheck(url: string): Promise<CommandResult> {
    const [command, ...args] = lastInstruction(runtimeStage, 'HEALTHCHECK')?.execForm ?? [];
    return runCommand(command === 'node' ? process.execPath : (command as string), args, {
      cwd: tmpdir(),
      env: imageEnvironment({ WALHOOK_HEALTHCHECK_URL: url }),
      timeoutMs: CLI_DEADLINE_MS,
    });
  }

  /** Returns the ENTRYPOINT words after `tini --`, the command that tini starts. */
  function nodeCommand(): string[] {
    const entrypoint = lastInstruction(runtimeStage, 'ENTRYPOINT')?.execForm ?? [];
    return entrypoint.slice(entrypoint.indexOf('--') + 1).map((word) => hostArgument(runtime, word));
  }

  test('only the tini install is skipped', (t) => {
    if (unavailable !== undefined) return skipOrFail(t, unavailable);
    assert.equal(skippedRuns.length, 1, `skipped: ${skippedRuns.join(' | ')}`);
    assert.match(skippedRuns[0] as string, /apt-get install\b.*\btini\b/);
  });

  test('runtime stage has no dev dependencies', async (t) => {
    if (unavailable !== undefined) return skipOrFail(t, unavailable);
    // package-lock.json marks each package that only dev dependencies need as `dev`.
    const lock = JSON.parse(await readFile(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean }>;
    };
    const app = join(runtime.root, 'app');
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '') continue;
      if (entry.dev === true) {
        assert.ok(!existsSync(join(app, path)), `dev-only package ${path} is in the image`);
      } else if (entry.optional !== true) {
        assert.ok(existsSync(join(app, path)), `production package ${path} is missing`);
      }
    }
    assert.ok(!existsSync(join(runtime.root, 'app', 'src')), 'TypeScript sources are in the image');
    assert.ok(existsSync(join(runtime.root, 'app', 'dist', 'cli', 'main.js')));
    assert.ok(existsSync(join(runtime.root, CONFIG_PATH)));
  });

  test('image command prints help', async (t) => {
    if (unavailable !== undefined) return skipOrFail(t, unavailable);
    const [command, ...args] = nodeCommand();
    const result = await runCommand(command as string, [...args, '--help'], {
      cwd: join(runtime.root, 'app'),
      env: imageEnvironment(),
      timeoutMs: CLI_DEADLINE_MS,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /\brun\b/);
    assert.match(result.stdout, /\bvalidate\b/);
    assert.match(result.stdout, /Exit codes:/);
  });

  test('image validates the bundled config', async (t) => {
    if (unavailable !== undefined) return skipOrFail(t, unavailable);
    const [command, ...args] = nodeCommand();
    const result = await runCommand(command as string, [...args, 'validate', '--config', hostArgument(runtime, CONFIG_PATH)], {
      cwd: join(runtime.root, 'app'),
      env: imageEnvironment({ DATABASE_URL: 'postgres://walhook@127.0.0.1:5432/app', ORDERS_TOKEN: 'token' }),
      timeoutMs: CLI_DEADLINE_MS,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /valid/);
  });

  describe('health check command', () => {
    let server: Server;
    let status = 200;
    let respond = true;
    const pending = new Set<() => void>();

    before(async () => {
      server = createServer((request, response) => {
        if (!respond) {
          pending.add(() => response.destroy());
          return;
        }
        response.statusCode = request.url === '/healthz' ? status : 404;
        response.end('{}');
      });
      server.listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
    });

    after(async () => {
      for (const release of pending) release();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    function url(path = '/healthz'): string {
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
    }

    test('200 from /healthz exits 0', async () => {
      status = 200;
      assert.equal((await runImageHealthcheck(url())).code, 0);
    });

    test('503 from /healthz exits 1', async () => {
      status = 503;
      assert.equal((await runImageHealthcheck(url())).code, 1);
    });

    test('refused connection exits 1', async () => {
      const closed = createTcpServer();
      closed.listen(0, '127.0.0.1');
      await new Promise((resolve) => closed.once('listening', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      assert.equal((await runImageHealthcheck(`http://127.0.0.1:${port}/healthz`)).code, 1);
    });

    test('unanswered request exits 1 before the deadline', async () => {
      respond = false;
      const started = Date.now();
      const result = await runImageHealthcheck(url());
      respond = true;
      assert.equal(result.code, 1);
      assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms, Docker's timeout is 5 s`);
    });
  });

  describe('image command under tini as PID 1', () => {
    let postgres: TestPostgres;
    let receiver: Receiver;
    let blackHole: ReturnType<typeof createTcpServer>;
    const blackHoleSockets = new Set<Socket>();
    let missing: string | undefined;

    before(async () => {
      if (!existsSync(TINI)) {
        missing = `${TINI} is missing; install Debian's tini package`;
        return;
      }
      const probe = await runCommand('unshare', ['--pid', '--fork', 'true'], { cwd: tmpdir(), timeoutMs: 10_000 }).catch(
        (error: Error) => ({ code: -1, signal: null, stdout: '', stderr: error.message }),
      );
      if (probe.code !== 0) {
        missing = `unshare --pid cannot create a PID namespace here: ${probe.stderr.trim()}`;
        return;
      }
      postgres = await startPostgres();
      receiver = await startReceiver();
      await postgres.query('CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL)');
      // Accepts connections and never answers, so walhook's start waits on PostgreSQL.
      blackHole = createTcpServer((socket) => {
        blackHoleSockets.add(socket);
        socket.on('error', () => undefined);
      });
      blackHole.listen(0, '127.0.0.1');
      await new Promise((resolve) => blackHole.once('listening', resolve));
    });

    after(async () => {
      for (const socket of blackHoleSockets) socket.destroy();
      await new Promise((resolve) => (blackHole === undefined ? resolve(undefined) : blackHole.close(resolve)));
      await receiver?.close();
      await postgres?.close();
    });

    /**
     * Writes `config` where the Deployment mounts it and starts ENTRYPOINT + CMD in a
     * new PID namespace, so tini is PID 1 as in a container.
     */
    async function startImage(config: object): Promise<WalhookProcess> {
      await writeFile(join(runtime.root, CONFIG_PATH), YAML.stringify(config));
      const entrypoint = lastInstruction(runtimeStage, 'ENTRYPOINT')?.execForm ?? [];
      const cmd = lastInstruction(runtimeStage, 'CMD')?.execForm ?? [];
      const words = [...entrypoint, ...cmd].map((word) => hostArgument(runtime, word));
      const env = imageEnvironment();
      const child: ChildProcess = spawn('unshare', ['--pid', '--fork', '--kill-child', ...words], {
        cwd: join(runtime.root, 'app'),
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const scratch = await mkdtemp(join(tmpdir(), 'walhook-image-run-'));
      return new WalhookProcess(child, scratch, join(runtime.root, CONFIG_PATH));
    }

    /** Sends `signal` to PID 1 of the namespace, as `docker stop` and the kubelet do. */
    async function signalPidOne(walhook: WalhookProcess, signal: NodeJS.Signals): Promise<void> {
      const pidOne = await waitFor(() => firstChildPid(walhook.pid as number), { message: 'PID 1 of the namespace' });
      process.kill(pidOne, signal);
    }

    function imageConfig(connection: string): object {
      return {
        source: { connection, slot: 'image_run', publication: 'image_run' },
        webhooks: [{ name: 'receiver', url: receiver.url, retry: { initial_delay: '100ms', max_delay: '1s' } }],
        triggers: [{ name: 'orders', table: 'public.orders', webhook: 'receiver' }],
        server: { host: '127.0.0.1', port: 0 },
        shutdown_timeout: '5s',
      };
    }

    test('streams changes and exits 0 on SIGTERM', async (t) => {
      if (unavailable !== undefined) return skipOrFail(t, unavailable);
      if (missing !== undefined) return skipOrFail(t, missing);
      const walhook = await startImage(imageConfig(postgres.connectionString));
      t.after(() => walhook.close());
      const listening = await walhook.waitForLog('http server listening', { timeoutMs: 30_000 });
      await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 30_000 });
      const origin = `http://127.0.0.1:${listening.port as number}`;
      const health = await runImageHealthcheck(`${origin}/healthz`);
      assert.equal(health.code, 0, `the image's HEALTHCHECK failed against walhook: ${health.stderr}`);
      const readiness = await waitFor(
        async () => {
          const response = await fetch(`${origin}/readyz`);
          return response.ok ? ((await response.json()) as { status: string }) : undefined;
        },
        { timeoutMs: 10_000, message: '/readyz to report ready' },
      );
      assert.equal(readiness.status, 'streaming');
      await postgres.query("INSERT INTO orders VALUES (1, 'from the image')");
      const [request] = await receiver.waitForRequests(1, { timeoutMs: 20_000 });
      assert.equal((request?.json as { event: { data: { new: { note: string } } } }).event.data.new.note, 'from the image');

      await signalPidOne(walhook, 'SIGTERM');
      const status = await walhook.waitForExit({ timeoutMs: 15_000 });
      assert.deepEqual(status, { code: 0, signal: null });
      assert.ok(walhook.logs.some((entry) => entry.msg === 'walhook stopped'), 'no clean shutdown was logged');
    });

    test('SIGTERM during start ends the process', async (t) => {
      if (unavailable !== undefined) return skipOrFail(t, unavailable);
      if (missing !== undefined) return skipOrFail(t, missing);
      const port = (blackHole.address() as AddressInfo).port;
      const walhook = await startImage(imageConfig(`postgres://walhook:secret@127.0.0.1:${port}/app`));
      t.after(() => walhook.close());
      // walhook now waits for PostgreSQL, before `run` installs its signal handlers.
      // node as PID 1 would ignore SIGTERM here. tini forwards it, node ends by the
      // default action, and tini exits with 128 + 15. Should walhook handle the signal
      // itself at this point one day, it exits 0 instead.
      await waitFor(() => blackHoleSockets.size > 0, { timeoutMs: 15_000, message: 'a connection attempt' });
      await signalPidOne(walhook, 'SIGTERM');
      const status = await walhook.waitForExit({ timeoutMs: 5_000 });
      assert.equal(status.signal, null);
      assert.ok(status.code === 128 + 15 || status.code === 0, `exit code ${status.code}`);
    });
  });
});
