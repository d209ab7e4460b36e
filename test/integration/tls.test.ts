import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import YAML from 'yaml';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { skipOrFail } from '../helpers/skip.js';
import { runCli } from '../helpers/walhook-cli.js';
import { startWalhook } from '../helpers/walhook-process.js';

let postgres: TestPostgres;
let receiver: Receiver;
let certificates: { ca: string; otherCa: string } | null = null;

/** Creates a CA, a server certificate for localhost signed by it, and an unrelated CA. */
function createCertificates(directory: string): { ca: string; otherCa: string; cert: string; key: string } {
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: directory, stdio: 'ignore' });
  };
  for (const name of ['ca', 'other-ca']) {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=walhook test ${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.crt`);
  }
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
  writeFileSync(join(directory, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', 'san.ext', '-out', 'server.crt');
  return {
    ca: join(directory, 'ca.crt'),
    otherCa: join(directory, 'other-ca.crt'),
    cert: join(directory, 'server.crt'),
    key: join(directory, 'server.key'),
  };
}

before(async () => {
  postgres = await startPostgres();
  receiver = await startReceiver();
  let files;
  try {
    files = createCertificates(mkdtempSync(join(tmpdir(), 'walhook-tls-')));
  } catch {
    return;
  }
  // The server reads its key as the data directory's owner, and wants it private.
  const owner = statSync(postgres.dataDir);
  for (const [source, target] of [
    [files.cert, 'server.crt'],
    [files.key, 'server.key'],
  ] as const) {
    const path = join(postgres.dataDir, target);
    execFileSync('cp', [source, path]);
    chownSync(path, owner.uid, owner.gid);
    execFileSync('chmod', ['600', path]);
  }
  await postgres.query("ALTER SYSTEM SET ssl = 'on'");
  await postgres.query('SELECT pg_reload_conf()');
  await postgres.query('CREATE TABLE tls_rows (id int PRIMARY KEY)');
  certificates = { ca: files.ca, otherCa: files.otherCa };
});

after(async () => {
  await receiver?.close();
  await postgres?.close();
});

function tlsConnection(caFile: string): string {
  const url = new URL(postgres.connectionString);
  url.hostname = 'localhost';
  url.searchParams.set('sslmode', 'verify-full');
  url.searchParams.set('sslrootcert', caFile);
  return url.toString();
}

function configFile(connection: string): string {
  const directory = mkdtempSync(join(tmpdir(), 'walhook-tls-config-'));
  const file = join(directory, 'walhook.yaml');
  writeFileSync(
    file,
    YAML.stringify({
      source: { connection, slot: 'tls', publication: 'tls' },
      webhooks: [{ name: 'rows', url: receiver.url }],
      triggers: [{ name: 'tls_rows', table: 'tls_rows', webhook: 'rows' }],
      server: { host: '127.0.0.1', port: 0 },
    }),
  );
  return file;
}

test('verify-full accepts the right CA and streams over TLS', async (t) => {
  if (certificates === null) {
    skipOrFail(t, 'openssl is not available to create test certificates');
    return;
  }
  const connection = tlsConnection(certificates.ca);
  const checked = await runCli(['validate', '--connect', '--config', configFile(connection)]);
  assert.equal(checked.code, 0, checked.stderr);

  const walhook = await startWalhook({
    config: {
      source: { connection, slot: 'tls', publication: 'tls' },
      webhooks: [{ name: 'rows', url: receiver.url }],
      triggers: [{ name: 'tls_rows', table: 'tls_rows', webhook: 'rows' }],
    },
    t,
  });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  await postgres.query('INSERT INTO tls_rows VALUES (1)');
  await receiver.waitForRequests(1, { timeoutMs: 15_000 });

  const sessions = await postgres.query<{ ssl: boolean; backend_type: string }>(
    `SELECT s.ssl, a.backend_type FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
     WHERE a.application_name LIKE 'walhook%'`,
  );
  assert.ok(sessions.some((session) => session.backend_type === 'walsender'), 'no replication session found');
  assert.ok(sessions.every((session) => session.ssl), 'every walhook session uses TLS');
  assert.equal((await walhook.stop({ timeoutMs: 15_000 })).code, 0);
});

test('verify-full rejects a server certificate from another CA', async (t) => {
  if (certificates === null) {
    skipOrFail(t, 'openssl is not available to create test certificates');
    return;
  }
  const result = await runCli(['validate', '--connect', '--config', configFile(tlsConnection(certificates.otherCa))]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /certificate/i);
});
