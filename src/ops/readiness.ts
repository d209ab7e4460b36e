/**
 * Readiness of a walhook replica, as `/readyz` reports it. A replica is ready when it
 * leads and streams, or when it is a standby that reaches the database and could take
 * over. It is not ready while the database is unreachable, after the slot was lost,
 * and while it starts or stops.
 */
import type { LeaderState } from './leader.js';
import type { SlotCondition } from './slot-status.js';

/** Stable code of the readiness result; `message` explains it to a person. */
export type ReadinessStatus =
  | 'streaming'
  | 'standby'
  | 'starting'
  | 'not_streaming'
  | 'database_unreachable'
  | 'slot_lost'
  | 'stopping';

export interface ReadinessState {
  readonly ready: boolean;
  readonly status: ReadinessStatus;
  /** Role in the leader election: `leader`, `standby` or `none` while neither. */
  readonly role: 'leader' | 'standby' | 'none';
  readonly message: string;
  readonly checks: {
    readonly leaderElection: LeaderState;
    readonly streaming: boolean;
    readonly database: 'ok' | 'unreachable' | 'unknown';
    readonly slot: SlotCondition | 'unknown';
  };
}

/** The parts of LeaderElection that readiness reads. */
export interface ElectionView {
  readonly state: LeaderState;
  readonly lastError: string | null;
}

/** The parts of SlotMonitor that readiness reads. */
export interface SlotMonitorView {
  readonly condition: SlotCondition | null;
  readonly lastError: string | null;
  readonly lostError: { readonly message: string } | null;
}

export interface ReadinessInput {
  /** True once shutdown began. */
  readonly stopping: boolean;
  readonly election: ElectionView;
  /** True while the replication stream of this replica is connected. */
  readonly streaming: boolean;
  /** Null when no slot monitor runs. */
  readonly slotMonitor: SlotMonitorView | null;
}

/** Returns the readiness of the replica; the first failing check in the order below decides. */
export function assessReadiness(input: ReadinessInput): ReadinessState {
  const { election, slotMonitor } = input;
  const databaseError =
    (election.state === 'unreachable' ? election.lastError : slotMonitor?.lastError) ??
    'unknown error';
  const unreachableMessage = `the source database is unreachable: ${databaseError}`;
  const checks: ReadinessState['checks'] = {
    leaderElection: election.state,
    streaming: input.streaming,
    database: databaseState(election, slotMonitor),
    slot: slotMonitor?.condition ?? 'unknown',
  };
  const state = election.state;
  const role = state === 'leader' || state === 'standby' ? state : 'none';
  const result = (ready: boolean, status: ReadinessStatus, message: string): ReadinessState => ({
    ready,
    status,
    role,
    message,
    checks,
  });

  if (input.stopping || election.state === 'closed') {
    return result(false, 'stopping', 'walhook is shutting down');
  }
  const lostError = slotMonitor?.lostError ?? null;
  if (lostError !== null) {
    return result(false, 'slot_lost', lostError.message);
  }
  if (checks.database === 'unreachable') {
    return result(false, 'database_unreachable', unreachableMessage);
  }
  switch (election.state) {
    case 'starting':
      return result(false, 'starting', 'the leader election has not finished its first attempt');
    case 'leader':
      return input.streaming
        ? result(true, 'streaming', 'this replica leads and streams from the replication slot')
        : result(false, 'not_streaming', 'this replica leads, but its replication stream is down');
    case 'standby':
      return result(true, 'standby', 'another replica leads; this standby can take over');
    case 'unreachable':
      return result(false, 'database_unreachable', unreachableMessage);
    default: {
      const unreachable: never = election.state;
      throw new Error(`unhandled leader state ${String(unreachable)}`);
    }
  }
}

function databaseState(
  election: ElectionView,
  slotMonitor: SlotMonitorView | null,
): ReadinessState['checks']['database'] {
  const monitorError = slotMonitor?.lastError ?? null;
  if (election.state === 'unreachable' || monitorError !== null) return 'unreachable';
  if (election.state === 'leader' || election.state === 'standby') return 'ok';
  return 'unknown';
}
