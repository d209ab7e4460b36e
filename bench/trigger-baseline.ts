/**
 * Starts and stops the trigger baseline's poller process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

import { pinned } from './postgres-tools.js';
import { REPO_ROOT } from './walhook-runner.js';

/** Poller settings: Hasura's defaults for event triggers. */
export const POLLER_SETTINGS = { batchSize: 100, intervalMs: 1000, concurrency: 100 } as const;

export class TriggerPoller {
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;
  readonly #output: string[] = [];

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = new Promise((resolve) => {
      child.once('error', () => resolve(null));
      child.once('exit', (code) => resolve(code));
    });
    createInterface({ input: child.stderr! }).on('line', (line) => this.#output.push(line));
  }

  /** Starts the poller and resolves once it is connected. */
  static async start(connection: string, receiverUrl: string, cpuList?: string): Promise<TriggerPoller> {
    const args = [
      '--import',
      'tsx',
      join(REPO_ROOT, 'bench', 'trigger-poller.ts'),
      connection,
      receiverUrl,
      String(POLLER_SETTINGS.batchSize),
      String(POLLER_SETTINGS.intervalMs),
      String(POLLER_SETTINGS.concurrency),
    ];
    const { command, commandArgs } = pinned(process.execPath, args, cpuList);
    const child = spawn(command, commandArgs, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const poller = new TriggerPoller(child);
    const started = new Promise<void>((resolve) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line === 'poller started') resolve();
      });
    });
    const outcome = await Promise.race([started.then(() => 'started' as const), poller.#exited]);
    if (outcome !== 'started') {
      throw new Error(`trigger poller exited with ${outcome}:\n${poller.#output.join('\n')}`);
    }
    return poller;
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  async stop(): Promise<void> {
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
  }
}
