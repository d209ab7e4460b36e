import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Script } from 'node:vm';

import pino from 'pino';

import { OpsServer } from '../../src/ops/http-server.js';
import { Metrics } from '../../src/ops/metrics.js';
import { assessReadiness } from '../../src/ops/readiness.js';
import { escapeHtml, renderStatusPage } from '../../src/ops/status-page.js';
import { STATUS_PAGE_SCRIPT } from '../../src/ops/status-page-script.js';
import type { RedeliveryResult, StatusReport } from '../../src/ops/status-report.js';
import type { DeadLetterRecord } from '../../src/sinks/dead-letter/store.js';

const logger = pino({ level: 'silent' });
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';

const readiness = () =>
  assessReadiness({
    stopping: false,
    election: { state: 'leader', lastError: null },
    streaming: true,
    slotMonitor: null,
  });

const REPORT: StatusReport = {
  generatedAt: '2025-01-31T12:00:00.000Z',
  instance: { hostname: 'host-1', pid: 42, lockSessionPid: 4321 },
  readiness: readiness(),
  slot: {
    name: 'walhook',
    publication: 'walhook',
    plugin: 'pgoutput',
    condition: 'ok',
    exists: true,
    active: true,
    walStatus: 'reserved',
    confirmedFlushLsn: '0/16B3748',
    lagBytes: '0',
    retainedBytes: '1024',
    maxRetainedBytes: '1073741824',
    lagSeconds: 0,
  },
  activity: { sampleIntervalMs: 10_000, samples: [], failures: [] },
  deadLetters: { table: '"walhook"."dead_letters"', available: true, message: null, byTrigger: [], latest: [] },
  admin: { enabled: true },
};

const RECORD = {
  id: '7',
  webhook: 'orders-api',
} as DeadLetterRecord;

/** Starts an OpsServer with the status page, whose `redeliver` returns an outcome by id. */
async function startServer(adminToken: string | null, redelivered: string[]): Promise<{ server: OpsServer; baseUrl: string }> {
  const server = new OpsServer(
    { host: '127.0.0.1', port: 0 },
    {
      logger,
      metrics: new Metrics({ defaultMetrics: false }),
      readiness,
      statusPage: {
        slot: 'walhook<test>',
        adminToken,
        report: async () => REPORT,
        redeliver: async (id): Promise<RedeliveryResult> => {
          redelivered.push(id);
          if (id === '7') return { kind: 'delivered', record: RECORD, status: 204, currentRetry: 3 };
          if (id === '8') {
            return { kind: 'failed', record: RECORD, result: { ok: false, status: 500, error: null }, currentRetry: 3 };
          }
          return { kind: 'not-found', id };
        },
      },
    },
  );
  const address = await server.listen();
  return { server, baseUrl: `http://127.0.0.1:${address.port}` };
}

describe('status page routes with admin token', () => {
  let server: OpsServer;
  let baseUrl: string;
  const redelivered: string[] = [];

  before(async () => {
    ({ server, baseUrl } = await startServer(ADMIN_TOKEN, redelivered));
  });

  after(async () => {
    await server?.close();
  });

  const redeliver = (id: string, authorization?: string): Promise<Response> =>
    fetch(`${baseUrl}/api/dead-letters/${id}/redeliver`, {
      method: 'POST',
      headers: authorization === undefined ? {} : { authorization },
    });

  test('page is HTML with a strict policy', async () => {
    const response = await fetch(`${baseUrl}/`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    const policy = response.headers.get('content-security-policy') ?? '';
    assert.match(policy, /default-src 'none'/);
    assert.match(policy, /script-src 'self'/);
    assert.doesNotMatch(policy, /unsafe-inline/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    const html = await response.text();
    assert.match(html, /slot walhook&lt;test&gt;/);
    assert.doesNotMatch(html, /walhook<test>/);
    assert.doesNotMatch(html, /https?:\/\//, 'the page loads nothing from another host');
  });

  test('script and style are served', async () => {
    const script = await fetch(`${baseUrl}/status.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.equal(await script.text(), STATUS_PAGE_SCRIPT);
    const style = await fetch(`${baseUrl}/status.css`);
    assert.equal(style.status, 200);
    assert.match(style.headers.get('content-type') ?? '', /^text\/css/);
    await style.body?.cancel();
  });

  test('api status returns the report', async () => {
    const response = await fetch(`${baseUrl}/api/status`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await response.json(), REPORT);
  });

  test('api status rejects POST', async () => {
    const response = await fetch(`${baseUrl}/api/status`, { method: 'POST' });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get('allow'), 'GET, HEAD');
    await response.body?.cancel();
  });

  test('redeliver without header returns 401', async () => {
    const response = await redeliver('7');
    assert.equal(response.status, 401);
    assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer/);
    await response.body?.cancel();
    assert.deepEqual(redelivered, []);
  });

  test('redeliver with wrong token returns 403', async () => {
    for (const authorization of [`Bearer ${ADMIN_TOKEN}x`, 'Bearer short', `Basic ${ADMIN_TOKEN}`]) {
      const response = await redeliver('7', authorization);
      const expected = authorization.startsWith('Basic') ? 401 : 403;
      assert.equal(response.status, expected, authorization);
      const body = (await response.json()) as { error: string };
      assert.doesNotMatch(body.error, new RegExp(ADMIN_TOKEN));
    }
    assert.deepEqual(redelivered, []);
  });

  test('redeliver with token returns outcome', async () => {
    const response = await redeliver('7', `Bearer ${ADMIN_TOKEN}`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      outcome: 'delivered',
      id: '7',
      webhook: 'orders-api',
      status: 204,
      currentRetry: 3,
    });
    assert.deepEqual(redelivered, ['7']);
  });

  test('redeliver failure returns 502', async () => {
    const response = await redeliver('8', `Bearer ${ADMIN_TOKEN}`);
    assert.equal(response.status, 502);
    const body = (await response.json()) as { outcome: string; status: number };
    assert.equal(body.outcome, 'failed');
    assert.equal(body.status, 500);
  });

  test('redeliver unknown id returns 404', async () => {
    const response = await redeliver('9', `Bearer ${ADMIN_TOKEN}`);
    assert.equal(response.status, 404);
    assert.equal(((await response.json()) as { outcome: string }).outcome, 'not-found');
  });

  test('redeliver invalid id returns 400', async () => {
    for (const id of ['0', 'abc', '1e3', '%zz']) {
      const response = await redeliver(id, `Bearer ${ADMIN_TOKEN}`);
      assert.equal(response.status, 400, id);
      await response.body?.cancel();
    }
  });

  test('redeliver rejects GET', async () => {
    const response = await fetch(`${baseUrl}/api/dead-letters/7/redeliver`);
    assert.equal(response.status, 405);
    assert.equal(response.headers.get('allow'), 'POST');
    await response.body?.cancel();
  });

  test('unknown path lists the page routes', async () => {
    const response = await fetch(`${baseUrl}/nope`);
    assert.equal(response.status, 404);
    assert.match(((await response.json()) as { error: string }).error, /\/, \/api\/status, \/healthz/);
  });

  test('other routes still reject POST', async () => {
    const response = await fetch(`${baseUrl}/metrics`, { method: 'POST' });
    assert.equal(response.status, 405);
    await response.body?.cancel();
  });
});

test('redeliver without admin token returns 403', async () => {
  const redelivered: string[] = [];
  const { server, baseUrl } = await startServer(null, redelivered);
  try {
    const response = await fetch(`${baseUrl}/api/dead-letters/7/redeliver`, {
      method: 'POST',
      headers: { authorization: 'Bearer anything-at-all-here' },
    });
    assert.equal(response.status, 403);
    assert.match(((await response.json()) as { error: string }).error, /server\.admin_token/);
    assert.deepEqual(redelivered, []);
  } finally {
    await server.close();
  }
});

test('status page script parses', () => {
  assert.doesNotThrow(() => new Script(STATUS_PAGE_SCRIPT, { filename: 'status.js' }));
  assert.doesNotMatch(STATUS_PAGE_SCRIPT, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
});

test('escapeHtml replaces markup characters', () => {
  assert.equal(escapeHtml(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  assert.match(renderStatusPage('a"b'), /a&quot;b/);
});
