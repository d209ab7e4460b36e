import assert from 'node:assert/strict';
import { test } from 'node:test';

import { assessReadiness, type ReadinessInput, type SlotMonitorView } from '../../src/ops/readiness.js';

const HEALTHY_SLOT: SlotMonitorView = { condition: 'ok', lastError: null, lostError: null };

function input(fields: Partial<ReadinessInput>): ReadinessInput {
  return {
    stopping: false,
    election: { state: 'leader', lastError: null },
    streaming: true,
    slotMonitor: HEALTHY_SLOT,
    ...fields,
  };
}

test('readiness of a streaming leader', () => {
  const state = assessReadiness(input({}));
  assert.equal(state.ready, true);
  assert.equal(state.status, 'streaming');
  assert.equal(state.role, 'leader');
  assert.deepEqual(state.checks, { leaderElection: 'leader', streaming: true, database: 'ok', slot: 'ok' });
});

test('readiness of a healthy standby', () => {
  const state = assessReadiness(input({ election: { state: 'standby', lastError: null }, streaming: false }));
  assert.equal(state.ready, true);
  assert.equal(state.status, 'standby');
  assert.equal(state.role, 'standby');
});

test('readiness of a leader not streaming yet', () => {
  const state = assessReadiness(input({ streaming: false }));
  assert.equal(state.ready, false);
  assert.equal(state.status, 'not_streaming');
});

test('readiness while the database is unreachable', () => {
  const byElection = assessReadiness(
    input({ election: { state: 'unreachable', lastError: 'connect ECONNREFUSED 127.0.0.1:5432' }, streaming: false }),
  );
  assert.equal(byElection.ready, false);
  assert.equal(byElection.status, 'database_unreachable');
  assert.equal(byElection.role, 'none');
  assert.match(byElection.message, /ECONNREFUSED 127\.0\.0\.1:5432/);
  assert.equal(byElection.checks.database, 'unreachable');

  const byMonitor = assessReadiness(
    input({ election: { state: 'standby', lastError: null }, slotMonitor: { ...HEALTHY_SLOT, lastError: 'query got no answer within 10000 ms' } }),
  );
  assert.equal(byMonitor.ready, false);
  assert.equal(byMonitor.status, 'database_unreachable');
  assert.match(byMonitor.message, /no answer within 10000 ms/);
});

test('readiness after the slot was lost', () => {
  const state = assessReadiness(
    input({
      streaming: false,
      slotMonitor: { condition: 'lost', lastError: null, lostError: { message: "replication slot 'walhook' is lost" } },
    }),
  );
  assert.equal(state.ready, false);
  assert.equal(state.status, 'slot_lost');
  assert.equal(state.message, "replication slot 'walhook' is lost");
  assert.equal(state.checks.slot, 'lost');
});

test('readiness while starting and stopping', () => {
  const starting = assessReadiness(input({ election: { state: 'starting', lastError: null }, streaming: false, slotMonitor: null }));
  assert.equal(starting.ready, false);
  assert.equal(starting.status, 'starting');
  assert.equal(starting.checks.database, 'unknown');
  assert.equal(starting.checks.slot, 'unknown');

  assert.equal(assessReadiness(input({ stopping: true })).status, 'stopping');
  assert.equal(assessReadiness(input({ stopping: true })).ready, false);
  assert.equal(assessReadiness(input({ election: { state: 'closed', lastError: null } })).status, 'stopping');
});

test('readiness over the retained WAL limit stays ready', () => {
  // Retained WAL above max_lag_bytes is a warning: restarting or removing the replica
  // from a load balancer would not help.
  const state = assessReadiness(input({ slotMonitor: { ...HEALTHY_SLOT, condition: 'over_limit' } }));
  assert.equal(state.ready, true);
  assert.equal(state.checks.slot, 'over_limit');
});
