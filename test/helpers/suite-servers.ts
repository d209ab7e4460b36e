// Test files only: importing this module loads node:test, which scripts such as the demo
// must not do.
import { after, before } from 'node:test';

import { startPostgres } from './postgres.js';
import type { StartPostgresOptions, TestPostgres } from './postgres.js';
import { startReceiver } from './receiver.js';
import type { Receiver } from './receiver.js';

/** A PostgreSQL server and an HTTP receiver that the hooks of one suite start and close. */
export interface SuiteServers {
  readonly postgres: TestPostgres;
  readonly receiver: Receiver;
}

export interface SuiteServersOptions {
  /** Options for `startPostgres()`, such as extra server settings. */
  readonly postgres?: StartPostgresOptions;
  /**
   * Runs in the same `before` hook once both servers are started, for example to create
   * tables. A separate top-level `before` hook would not wait for the servers, because
   * Node 20 (seen on 20.20.2) starts each top-level `before` hook as soon as it is registered.
   */
  readonly setup?: (servers: SuiteServers) => Promise<unknown>;
}

/**
 * Registers node:test hooks in the enclosing `describe`, or in the file at the top level.
 * `before` starts a PostgreSQL server, then a receiver, then runs `options.setup`.
 * `after` closes the receiver and then the server. Reading a property before `before`
 * has started both throws.
 */
export function setUpSuiteServers(options: SuiteServersOptions = {}): SuiteServers {
  let postgres: TestPostgres | undefined;
  let receiver: Receiver | undefined;
  const servers: SuiteServers = {
    get postgres() {
      return requireStarted(postgres, 'PostgreSQL server');
    },
    get receiver() {
      return requireStarted(receiver, 'receiver');
    },
  };

  before(async () => {
    postgres = await startPostgres(options.postgres);
    receiver = await startReceiver();
    await options.setup?.(servers);
  });

  after(async () => {
    await receiver?.close();
    await postgres?.close();
  });

  return servers;
}

function requireStarted<T>(value: T | undefined, name: string): T {
  if (value === undefined) {
    throw new Error(`the ${name} is not started yet, so read it in a test or in options.setup of setUpSuiteServers()`);
  }
  return value;
}
