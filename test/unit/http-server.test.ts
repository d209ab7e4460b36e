import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import pino from 'pino';

import { OpsServer } from '../../src/ops/http-server.js';
import { Metrics } from '../../src/ops/metrics.js';
import { assessReadiness, type ReadinessInput } from '../../src/ops/readiness.js';

const logger = pino({ level: 'silent' });

describe('ops http server', () => {
  let server: OpsServer;
  let baseUrl: string;
  const metrics = new Metrics({ defaultMetrics: false });
  let readinessInput: ReadinessInput = {
    stopping: false,
    election: { state: 'leader', lastError: null },
    streaming: true,
    slotMonitor: null,
  };

  before(async () => {
    server = new OpsServer(
      { host: '127.0.0.1', port: 0 },
      { logger, metrics, readiness: () => assessReadiness(readinessInput) },
    );
    const address = await server.listen();
    baseUrl = `http://127.0.0.1:${address.port}`;
  });

  after(async () => {
    await server?.close();
  });

  test('healthz reports a running event loop', async () => {
    const response = await fetch(`${baseUrl}/healthz`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    const body = (await response.json()) as { status: string; eventLoopDelayMs: number };
    assert.equal(body.status, 'ok');
    assert.equal(typeof body.eventLoopDelayMs, 'number');
  });

  test('readyz returns 200 for a streaming leader', async () => {
    readinessInput = { ...readinessInput, election: { state: 'leader', lastError: null }, streaming: true };
    const response = await fetch(`${baseUrl}/readyz`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as { ready: boolean; status: string; role: string };
    assert.equal(body.ready, true);
    assert.equal(body.status, 'streaming');
    assert.equal(body.role, 'leader');
  });

  test('readyz returns 200 for a standby', async () => {
    readinessInput = { ...readinessInput, election: { state: 'standby', lastError: null }, streaming: false };
    const response = await fetch(`${baseUrl}/readyz`);
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { status: string }).status, 'standby');
  });

  test('readyz returns 503 with the reason', async () => {
    readinessInput = {
      ...readinessInput,
      election: { state: 'unreachable', lastError: 'connect ECONNREFUSED 127.0.0.1:1' },
      streaming: false,
    };
    const response = await fetch(`${baseUrl}/readyz`);
    assert.equal(response.status, 503);
    const body = (await response.json()) as { ready: boolean; status: string; message: string };
    assert.equal(body.ready, false);
    assert.equal(body.status, 'database_unreachable');
    assert.match(body.message, /ECONNREFUSED/);
  });

  test('metrics returns the Prometheus text', async () => {
    metrics.setLeader(true);
    metrics.eventCaptured('order_events', 'orders-api', 'INSERT');
    const response = await fetch(`${baseUrl}/metrics`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), metrics.contentType);
    const text = await response.text();
    assert.match(text, /^walhook_leader 1$/m);
    assert.match(text, /^walhook_events_captured_total\{trigger="order_events",webhook="orders-api",op="insert"\} 1$/m);
  });

  test('unknown path returns 404', async () => {
    const response = await fetch(`${baseUrl}/nope`);
    assert.equal(response.status, 404);
    assert.match(((await response.json()) as { error: string }).error, /\/healthz, \/readyz and \/metrics/);
  });

  test('other methods return 405', async () => {
    const response = await fetch(`${baseUrl}/readyz`, { method: 'POST' });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get('allow'), 'GET, HEAD');
    await response.body?.cancel();
  });

  test('head request returns headers only', async () => {
    const response = await fetch(`${baseUrl}/healthz`, { method: 'HEAD' });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), '');
  });

  test('query string does not change the route', async () => {
    const response = await fetch(`${baseUrl}/healthz?verbose=1`);
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });
});

test('healthz fails after a blocked event loop', async () => {
  const server = new OpsServer(
    { host: '127.0.0.1', port: 0, maxEventLoopDelayMs: 100 },
    { logger, metrics: new Metrics({ defaultMetrics: false }), readiness: () => assert.fail('not called') },
  );
  const { port } = await server.listen();
  try {
    // The histogram samples every 20 ms, so let it take a few samples first.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const blockUntil = Date.now() + 300;
    while (Date.now() < blockUntil) {
      // Busy wait: blocks the event loop for 300 ms.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const response = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(response.status, 503);
    const body = (await response.json()) as { status: string; eventLoopDelayMs: number };
    assert.equal(body.status, 'event_loop_blocked');
    assert.ok(body.eventLoopDelayMs >= 250, `eventLoopDelayMs ${body.eventLoopDelayMs}`);
  } finally {
    await server.close();
  }
});

test('listen rejects a port in use', async () => {
  const first = new OpsServer(
    { host: '127.0.0.1', port: 0 },
    { logger, metrics: new Metrics({ defaultMetrics: false }), readiness: () => assert.fail('not called') },
  );
  const { port } = await first.listen();
  const second = new OpsServer(
    { host: '127.0.0.1', port },
    { logger, metrics: new Metrics({ defaultMetrics: false }), readiness: () => assert.fail('not called') },
  );
  try {
    await assert.rejects(second.listen(), { code: 'EADDRINUSE' });
  } finally {
    await second.close();
    await first.close();
  }
});
