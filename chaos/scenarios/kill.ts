/**
 * Scenario 1: kill -9 walhook at random moments during mixed load while the receiver
 * flaps between 200, 500/503 and slow responses, restarting walhook after each kill.
 */
import { setTimeout as delay } from 'node:timers/promises';

import { Harness, type ScenarioOptions, type ScenarioResult, lastErrorOf } from '../harness.js';
import { flappingPolicy } from '../receiver.js';

/**
 * A small in-flight budget, so that some kills hit walhook while it has stopped reading
 * from the slot.
 */
const MAX_INFLIGHT_EVENTS = 500;

const DESCRIPTION =
  'kill -9 walhook at random moments during mixed load while the receiver flaps; restart after each kill';

export async function runKillScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const kills = options.short ? 4 : 20;
  const faultRng = options.rng.fork('faults');
  const harness = await Harness.start({ ...options, maxInflightEvents: MAX_INFLIGHT_EVENTS });
  try {
    // Slow responses stay below the 2 s webhook timeout, except the hanging ones,
    // which walhook abandons.
    harness.receiver.respond(
      flappingPolicy(options.rng.fork('receiver'), { minPhaseMs: 300, maxPhaseMs: 3_000, hangMs: 3_000 }),
    );
    let walhook = await harness.startWalhook();
    await harness.waitForStreaming(walhook);
    // The slot exists now: changes committed before it would never be streamed.
    harness.load.start();

    for (let kill = 1; kill <= kills; kill += 1) {
      await delay(faultRng.int(500, options.short ? 5_000 : 7_000));
      if (walhook.exitStatus !== undefined) {
        // finish() records the unexpected exit as a problem; go on with a new process.
        options.progress(`walhook exited on its own before kill ${kill}: ${lastErrorOf(walhook)}`);
        walhook = await harness.startWalhook();
        await harness.waitForStreaming(walhook);
        continue;
      }
      const start = harness.faultStarted();
      await harness.kill(walhook);
      await delay(faultRng.int(0, 1_000));
      walhook = await harness.startWalhook();
      const record = harness.faultEnded('kill -9, then restart', start);
      await harness.waitForStreaming(walhook);
      options.progress(
        `kill ${kill}/${kills} at ${(record.startedAtMs / 1000).toFixed(1)} s, ` +
          `${record.backlogAtStart} change(s) not yet delivered`,
      );
    }

    // The last restart also gets some load before the drain.
    await delay(2_000);
    await harness.drain(options.short ? 90_000 : 180_000);
    await harness.stopWalhooks();
    return await harness.finish('kill-9', DESCRIPTION, { kills, maxInflightEvents: MAX_INFLIGHT_EVENTS });
  } finally {
    await harness.close();
  }
}
