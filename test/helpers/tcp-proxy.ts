import { createServer, type Server, Socket } from 'node:net';

import { trackResource } from './cleanup.js';

/**
 * A TCP proxy on 127.0.0.1 in front of a test server. `freeze()` stops forwarding on
 * the open connections without closing them, as a network that drops every packet
 * does, and `cut()` then closes them, as the server does once its TCP keepalives fail.
 */
export interface TcpProxy {
  readonly port: number;
  /** Stops forwarding on every open connection; new connections still work. */
  freeze(): void;
  /** Destroys every frozen connection on both sides. */
  cut(): void;
  close(): Promise<void>;
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  frozen: boolean;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    const pair: Pair = { client, upstream, frozen: false };
    pairs.add(pair);
    // A frozen connection passes nothing on, not even its close: the other side keeps
    // its socket until cut() or close().
    const drop = (): void => {
      if (pair.frozen) return;
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    upstream.connect(targetPort, targetHost, () => {
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');

  const close = async (): Promise<void> => {
    untrack();
    for (const pair of pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    pairs.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  const untrack = trackResource({
    description: `TCP proxy on 127.0.0.1:${address.port}`,
    close,
    closeSync: () => {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      server.close();
    },
  });

  return {
    port: address.port,
    freeze() {
      for (const pair of pairs) {
        pair.frozen = true;
        pair.client.unpipe(pair.upstream);
        pair.upstream.unpipe(pair.client);
        pair.client.pause();
        pair.upstream.pause();
      }
    },
    cut() {
      for (const pair of [...pairs]) {
        if (!pair.frozen) continue;
        pairs.delete(pair);
        pair.client.destroy();
        pair.upstream.destroy();
      }
    },
    close,
  };
}
