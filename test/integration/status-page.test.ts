// The status page of a running leader and standby in headless Chromium: role, charts,
// a failed delivery, dead letters and the redeliver action with and without the admin
// token, and a screenshot.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';

import { hasChromium, launchChromium, type TestBrowser } from '../helpers/chromium.js';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { skipOrFail } from '../helpers/skip.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook, type WalhookProcess } from '../helpers/walhook-process.js';

const ADMIN_TOKEN = 'page-admin-token-7f3a9c2e41d8b6';
const VIEWPORT = { width: 1280, height: 1000 };
/** The page polls every 5 s, and a chart point needs a 10 s sample, so waits allow for both. */
const PAGE_WAIT_MS = 30_000;
/** PNG signature and the IHDR chunk type, which the format puts first. */
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let postgres: TestPostgres;
let receiver: Receiver;
let browser: TestBrowser | undefined;
let failing = true;

before(async () => {
  postgres = await startPostgres();
  receiver = await startReceiver();
  receiver.respond((request) => (failing && request.body.includes('"fail-me"') ? { status: 503 } : undefined));
  await postgres.query('CREATE TABLE page_orders (id int PRIMARY KEY, note text)');
});

after(async () => {
  await browser?.close();
  await receiver?.close();
  await postgres?.close();
});

function config(adminToken: string | null): object {
  return {
    source: { connection: postgres.connectionString, slot: 'page_slot', publication: 'page_slot' },
    webhooks: [
      {
        name: 'orders-api',
        url: receiver.url,
        retry: { initial_delay: '50ms', max_delay: '100ms', max_attempts: 2 },
      },
    ],
    triggers: [{ name: 'page_orders', table: 'public.page_orders', webhook: 'orders-api' }],
    leader: { poll_interval: '1s' },
    server: { host: '127.0.0.1', port: 0, ...(adminToken === null ? {} : { admin_token: adminToken }) },
  };
}

async function baseUrlOf(walhook: WalhookProcess): Promise<string> {
  const entry = await walhook.waitForLog('http server listening', { timeoutMs: 20_000 });
  return `http://127.0.0.1:${String(entry.port)}`;
}

async function openStatusPage(url: string): Promise<Page> {
  assert.ok(browser !== undefined);
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  const response = await page.goto(url);
  assert.equal(response?.status(), 200);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: PAGE_WAIT_MS });
  assert.deepEqual(errors, [], 'the page logs no errors');
  return page;
}

/** Reads the width and height from a PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  assert.ok(png.subarray(0, 8).equals(PNG_SIGNATURE), 'the file starts with the PNG signature');
  assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

test('status page in Chromium', async (t) => {
  if (!(await hasChromium())) return skipOrFail(t, '/usr/bin/chromium is missing; install the Debian package chromium');

  const leader = await startWalhook({ config: config(ADMIN_TOKEN), t });
  await leader.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const standby = await startWalhook({ config: config(null), t });
  const leaderUrl = await baseUrlOf(leader);
  const standbyUrl = await baseUrlOf(standby);
  await waitFor(
    async () => ((await (await fetch(`${standbyUrl}/readyz`)).json()) as { status: string }).status === 'standby',
    { timeoutMs: 15_000, message: 'the second replica to become a standby' },
  );

  for (let id = 1; id <= 5; id += 1) await postgres.query('INSERT INTO page_orders VALUES ($1, $2)', [id, 'ok']);
  await postgres.query('INSERT INTO page_orders VALUES (6, $1)', ['fail-me']);
  const failed = await receiver.waitForRequest((request) => request.body.includes('"fail-me"'), { timeoutMs: 15_000 });
  const eventId = String(failed.headers['webhook-id']);
  await leader.waitForLog('delivery failed for good, writing a dead letter', { timeoutMs: 15_000 });

  browser = await launchChromium(VIEWPORT);
  const page = await openStatusPage(`${leaderUrl}/`);

  await t.test('leader page shows its role', async () => {
    assert.equal(await page.getAttribute('#role', 'data-role'), 'leader');
    assert.match((await page.textContent('#role')) ?? '', /^leader \(streaming\)$/);
    assert.match((await page.textContent('#slot')) ?? '', /page_slot/);
  });

  await t.test('failed delivery is listed', async () => {
    const row = page.locator('tr.failure', { hasText: eventId }).first();
    await row.waitFor({ timeout: PAGE_WAIT_MS });
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[1], 'orders-api');
    assert.equal(cells[2], 'page_orders');
    assert.equal(cells[3], eventId);
    assert.equal(cells[5], '503');
    const text = (await page.textContent('#failures')) ?? '';
    assert.ok(!text.includes('fail-me'), 'the list contains no row data');
  });

  await t.test('charts render data points', async () => {
    await page.waitForFunction(
      () => document.querySelectorAll('#lag-chart svg circle').length >= 2,
      undefined,
      { timeout: PAGE_WAIT_MS },
    );
    const throughputPoints = await page.locator('#throughput-chart svg circle.series-delivered').count();
    assert.ok(throughputPoints >= 2, `throughput points: ${throughputPoints}`);
    const polyline = (await page.getAttribute('#throughput-chart svg polyline.series-delivered', 'points')) ?? '';
    assert.ok(polyline.trim().split(/\s+/).length >= 2, `polyline points: ${polyline}`);
    const delivered = await page
      .locator('#throughput-chart svg circle.series-delivered')
      .evaluateAll((circles) => circles.map((circle) => Number(circle.getAttribute('data-value'))));
    assert.ok(delivered.some((value) => value > 0), `delivered rates: ${delivered.join(', ')}`);
    const box = await page.locator('#lag-chart svg').boundingBox();
    assert.ok(box !== null, 'the lag chart is visible');
    assert.ok(box.width > 100, `chart width ${box.width}`);
    assert.ok(box.height > 30, `chart height ${box.height}`);
  });

  const deadLetterRow = page.locator('tr.dead-letter', { hasText: 'page_orders' }).first();
  await t.test('dead letter has a disabled button', async () => {
    await deadLetterRow.waitFor({ timeout: PAGE_WAIT_MS });
    assert.match((await deadLetterRow.textContent()) ?? '', /pending/);
    assert.equal(await page.isEnabled('#admin-token'), true, 'the leader has an admin token configured');
    assert.equal(await deadLetterRow.locator('button.redeliver').isDisabled(), true, 'no token pasted yet');
  });

  await t.test('standby page disables redelivery', async () => {
    const standbyPage = await openStatusPage(`${standbyUrl}/`);
    assert.equal(await standbyPage.getAttribute('#role', 'data-role'), 'standby');
    const row = standbyPage.locator('tr.dead-letter', { hasText: 'page_orders' }).first();
    await row.waitFor({ timeout: PAGE_WAIT_MS });
    assert.equal(await standbyPage.isDisabled('#admin-token'), true);
    assert.equal(await row.locator('button.redeliver').isDisabled(), true);
    assert.match((await standbyPage.textContent('#admin-note')) ?? '', /server\.admin_token is not set/);
    const response = await fetch(`${standbyUrl}/api/dead-letters/1/redeliver`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(response.status, 403);
    await response.body?.cancel();
    await standbyPage.close();
  });

  await t.test('wrong token is rejected', async () => {
    const before = receiver.requests.length;
    await page.fill('#admin-token', 'not-the-admin-token-at-all');
    const button = deadLetterRow.locator('button.redeliver');
    assert.equal(await button.isEnabled(), true, 'a pasted token enables the button');
    await button.click();
    await page.waitForSelector('#action-result[data-outcome="error"]', { timeout: 10_000 });
    assert.match((await page.textContent('#action-result')) ?? '', /invalid admin token/);
    assert.equal(receiver.requests.length, before, 'nothing was sent to the webhook');
  });

  await t.test('admin token redelivers', async () => {
    failing = false;
    const before = receiver.requests.length;
    await page.fill('#admin-token', ADMIN_TOKEN);
    await deadLetterRow.locator('button.redeliver').click();
    await page.waitForSelector('#action-result[data-outcome="delivered"]', { timeout: 15_000 });
    assert.match((await page.textContent('#action-result')) ?? '', /delivered to webhook orders-api, status 200/);
    const redelivered = receiver.requests.slice(before).filter((request) => request.headers['webhook-id'] === eventId);
    assert.equal(redelivered.length, 1, 'the webhook got the event once more');
    await page.locator('tr.dead-letter .redelivered').first().waitFor({ timeout: PAGE_WAIT_MS });
  });

  await t.test('screenshot is a PNG of the viewport', async () => {
    const keepDir = process.env.WALHOOK_TEST_SCREENSHOT_DIR;
    const dir = keepDir ?? (await mkdtemp(join(tmpdir(), 'walhook-screenshot-')));
    try {
      await mkdir(dir, { recursive: true });
      const path = join(dir, 'status-page.png');
      await page.screenshot({ path });
      const png = await readFile(path);
      assert.ok(png.length > 10_000, `screenshot of ${png.length} bytes`);
      assert.deepEqual(pngSize(png), VIEWPORT);
      t.diagnostic(`screenshot: ${path}`);
    } finally {
      if (keepDir === undefined) await rm(dir, { recursive: true, force: true });
    }
  });

  await t.test('stored markup shows as text', async () => {
    const markup = '<img src=x onerror="document.body.dataset.injected=1">';
    await postgres.query(
      `INSERT INTO walhook.dead_letters (event_id, trigger, webhook, op, lsn, envelope, attempts, reason,
         first_attempt_at, last_attempt_at)
       VALUES ('markup-event', $1, 'orders-api', 'INSERT', '0/1', '{}', 1, $2, now(), now())`,
      ['<b>trigger</b>', markup],
    );
    const row = page.locator('tr.dead-letter', { hasText: markup }).first();
    await row.waitFor({ timeout: PAGE_WAIT_MS });
    assert.match((await row.textContent()) ?? '', /<b>trigger<\/b>/);
    assert.equal(await page.locator('#dead-letters img, #dead-letters b').count(), 0);
    assert.equal(await page.evaluate(() => document.body.dataset.injected), undefined);
  });
});
