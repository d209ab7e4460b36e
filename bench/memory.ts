/**
 * Memory under a slow receiver: walhook starts on a slot with a large backlog while the
 * receiver delays every response, so walhook reads far faster than it can deliver and
 * only its in-flight limits bound what it holds. The peak RSS (VmHWM) is read after a
 * fixed time, long after walhook has read as far as those limits let it.
 */
import type { TestPostgres } from '../test/helpers/postgres.js';
import { ProcessSampler } from './proc-stats.js';
import type { BenchReceiver } from './receiver.js';
import type { BenchScale } from './scale.js';
import { BenchWalhook } from './walhook-runner.js';
import { createSlot, dropWorkload, memoryWorkload, prepareWorkload, withClient, workloadWalhookConfig } from './workloads.js';

export interface MemoryResult {
  readonly backlogChanges: number;
  readonly description: string;
  readonly responseDelayMs: number;
  readonly seconds: number;
  readonly peakRssBytes: number;
  /** RSS when the run ended, in bytes. */
  readonly finalRssBytes: number;
  readonly deliveredEvents: number;
}

export interface MemoryContext {
  readonly server: TestPostgres;
  readonly receiver: BenchReceiver;
  readonly scale: BenchScale;
  readonly log: (message: string) => void;
}

export async function measureSlowReceiverMemory(context: MemoryContext): Promise<MemoryResult> {
  const { server, receiver, scale, log } = context;
  const workload = memoryWorkload(scale.memoryChanges);
  await prepareWorkload(server, workload);
  const slot = `${workload.database}_walhook`;
  await createSlot(server, workload.database, slot);
  await withClient(server, workload.database, (client) => workload.backlog(client));
  log(`memory: backlog of ${workload.description} written`);

  receiver.resetCounts();
  receiver.responseDelayMs = scale.slowResponseDelayMs;
  const walhook = await BenchWalhook.start({
    config: workloadWalhookConfig(server, workload, { slot, receiverUrl: receiver.url, batched: false }),
  });
  const sampler = new ProcessSampler(walhook.pid);
  try {
    sampler.start();
    await walhook.waitForStreaming();
    const startedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, scale.memorySeconds * 1000));
    const seconds = (performance.now() - startedAt) / 1000;
    const samples = sampler.stop();
    const result: MemoryResult = {
      backlogChanges: scale.memoryChanges,
      description: workload.description,
      responseDelayMs: scale.slowResponseDelayMs,
      seconds,
      peakRssBytes: samples.peakRssBytes,
      finalRssBytes: samples.finalRssBytes,
      deliveredEvents: receiver.counts().events,
    };
    log(
      `memory: peak RSS ${(result.peakRssBytes / 2 ** 20).toFixed(0)} MiB after ${seconds.toFixed(0)} s ` +
        `with ${result.deliveredEvents} events delivered`,
    );
    return result;
  } finally {
    await walhook.stop();
    receiver.responseDelayMs = 0;
    await dropWorkload(server, workload);
  }
}
