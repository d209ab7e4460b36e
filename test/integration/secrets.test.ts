// No secret from the configuration appears in what walhook shows: its log, the HTTP
// routes, the status page and the output of its commands.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import YAML from 'yaml';

import { hasChromium, launchChromium } from '../helpers/chromium.js';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { runCli } from '../helpers/walhook-cli.js';
import { startWalhook } from '../helpers/walhook-process.js';

const ROLE = 'secret_walhook';

let postgres: TestPostgres;
let receiver: Receiver;
let configDir: string;

/** Random values that must never be shown. Each is long enough not to occur by chance. */
const secrets = {
  databasePassword: `dbpw-${randomBytes(12).toString('hex')}`,
  wrongDatabasePassword: `wrongpw-${randomBytes(12).toString('hex')}`,
  headerValue: `hdr-${randomBytes(12).toString('hex')}`,
  signingSecretKey: randomBytes(24).toString('base64'),
  adminToken: `admin-${randomBytes(16).toString('hex')}`,
};
const signingSecret = `whsec_${secrets.signingSecretKey}`;

before(async () => {
  postgres = await startPostgres();
  receiver = await startReceiver();
  receiver.respond((request) => (request.body.includes('"fail-me"') ? { status: 500 } : undefined));
  configDir = await mkdtemp(join(tmpdir(), 'walhook-secrets-test-'));
  await postgres.query(`CREATE ROLE ${ROLE} LOGIN SUPERUSER PASSWORD '${secrets.databasePassword}'`);
  await postgres.query('CREATE TABLE secret_rows (id int PRIMARY KEY, note text)');
});

after(async () => {
  await receiver?.close();
  await postgres?.close();
  if (configDir !== undefined) await rm(configDir, { recursive: true, force: true });
});

function connection(password: string): string {
  return `postgres://${ROLE}:${password}@127.0.0.1:${postgres.port}/postgres`;
}

function config(password: string): object {
  return {
    source: { connection: connection(password), slot: 'secret_slot', publication: 'secret_slot' },
    webhooks: [
      {
        name: 'hooks',
        url: receiver.url,
        // Both come from the environment, as a deployment would pass them.
        headers: { authorization: 'Bearer ${SECRET_HEADER}', 'x-api-key': '${SECRET_HEADER}' },
        signing_secret: '${SECRET_SIGNING}',
        retry: { initial_delay: '50ms', max_delay: '100ms', max_attempts: 2 },
      },
    ],
    triggers: [{ name: 'secret_rows', table: 'public.secret_rows', webhook: 'hooks' }],
    server: { host: '127.0.0.1', port: 0, admin_token: secrets.adminToken },
    log: { level: 'trace' },
  };
}

const env = { SECRET_HEADER: secrets.headerValue, SECRET_SIGNING: signingSecret };

/** Returns the response status line, headers and body as one text. */
async function capture(url: string, init: RequestInit = {}): Promise<string> {
  const response = await fetch(url, init);
  const headers = [...response.headers.entries()].map(([name, value]) => `${name}: ${value}`).join('\n');
  return `${init.method ?? 'GET'} ${url} ${response.status}\n${headers}\n\n${await response.text()}`;
}

test('no secret in logs, routes or commands', async (t) => {
  const configPath = join(configDir, 'walhook.yaml');
  await writeFile(configPath, YAML.stringify(config(secrets.databasePassword)));
  const wrongPath = join(configDir, 'wrong-password.yaml');
  await writeFile(wrongPath, YAML.stringify(config(secrets.wrongDatabasePassword)));

  const walhook = await startWalhook({ config: config(secrets.databasePassword), env, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const listening = await walhook.waitForLog('http server listening');
  const base = `http://127.0.0.1:${String(listening.port)}`;

  await postgres.query("INSERT INTO secret_rows VALUES (1, 'ok'), (2, 'fail-me')");
  await walhook.waitForLog('delivery failed for good, writing a dead letter', { timeoutMs: 15_000 });
  const delivered = await receiver.waitForRequest((request) => request.body.includes('"ok"'));
  assert.equal(delivered.headers.authorization, `Bearer ${secrets.headerValue}`, 'the header secret was in use');
  assert.ok(delivered.headers['webhook-signature'] !== undefined, 'the signing secret was in use');

  const outputs: string[] = [];
  for (const path of ['/healthz', '/readyz', '/metrics', '/api/status', '/', '/status.js', '/status.css', '/nope']) {
    outputs.push(await capture(`${base}${path}`));
  }
  outputs.push(await capture(`${base}/api/dead-letters/1/redeliver`, { method: 'POST' }));
  outputs.push(
    await capture(`${base}/api/dead-letters/1/redeliver`, { method: 'POST', headers: { authorization: 'Bearer wrong-token-value' } }),
  );
  const redelivery = await capture(`${base}/api/dead-letters/1/redeliver`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secrets.adminToken}` },
  });
  assert.match(redelivery, / 502\n/, 'the admin token was accepted and the webhook still fails');
  outputs.push(redelivery);

  if (await hasChromium()) {
    const browser = await launchChromium({ width: 1280, height: 1000 });
    try {
      const page = await browser.newPage();
      await page.goto(`${base}/`);
      await page.waitForSelector('body[data-loaded="true"]', { timeout: 20_000 });
      await page.fill('#admin-token', secrets.adminToken);
      outputs.push(await page.content());
      outputs.push((await page.textContent('body')) ?? '');
    } finally {
      await browser.close();
    }
  } else {
    t.diagnostic('Chromium is missing, so the rendered page is not checked; the served HTML and JSON are');
  }

  const commands = [
    ['status', '--config', configPath],
    ['status', '--config', configPath, '--json'],
    ['status', '--config', wrongPath],
    ['validate', '--config', configPath, '--connect'],
    ['dead-letters', 'list', '--config', configPath],
    ['teardown', '--config', configPath],
  ];
  for (const args of commands) {
    const result = await runCli(args, { env });
    outputs.push(`walhook ${args.join(' ')} exit ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
  const wrongStatus = outputs.find((output) => output.startsWith(`walhook status --config ${wrongPath}`)) ?? '';
  assert.match(wrongStatus, /password authentication failed/, 'the wrong password was tried');

  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
  outputs.push(...walhook.stdoutLines, ...walhook.stderrLines);
  assert.ok(walhook.logs.length > 20, `walhook logged ${walhook.logs.length} lines`);

  const everything = outputs.join('\n');
  for (const [name, secret] of Object.entries(secrets)) {
    const places = outputs.filter((output) => output.includes(secret)).map((output) => output.slice(0, 120));
    assert.deepEqual(places, [], `${name} appears in the output`);
  }
  assert.ok(!everything.includes(signingSecret));
});
