import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyedQueue } from '../../src/sinks/webhook/keyed-queue.js';

test('keyed queue holds a key while its item is in flight', () => {
  const queue = new KeyedQueue<string>();
  queue.push('a', 'a1');
  queue.push('a', 'a2');
  queue.push('b', 'b1');

  assert.deepEqual(queue.take(), { key: 'a', items: ['a1'] });
  assert.deepEqual(queue.take(), { key: 'b', items: ['b1'] });
  assert.equal(queue.take(), undefined, 'a2 waits for a1');

  queue.release('a');
  assert.deepEqual(queue.take(), { key: 'a', items: ['a2'] });
  assert.equal(queue.size, 0);
});

test('keyed queue takes a prefix of one key as a batch', () => {
  const queue = new KeyedQueue<number>();
  for (let i = 1; i <= 5; i++) queue.push('k', i);
  assert.deepEqual(queue.take(3), { key: 'k', items: [1, 2, 3] });
  queue.release('k');
  assert.deepEqual(queue.take(3), { key: 'k', items: [4, 5] });
});

test('keyed queue stops a batch at the weight limit but always takes one', () => {
  const queue = new KeyedQueue<number>();
  queue.push('k', 10);
  queue.push('k', 10);
  queue.push('k', 10);
  assert.deepEqual(queue.take(10, 25, (n) => n), { key: 'k', items: [10, 10] });
  queue.release('k');
  assert.deepEqual(queue.take(10, 5, (n) => n), { key: 'k', items: [10] });
});

test('keyed queue unshift keeps order for split batches', () => {
  const queue = new KeyedQueue<number>();
  for (let i = 1; i <= 4; i++) queue.push('k', i);
  const taken = queue.take(4);
  assert.deepEqual(taken?.items, [1, 2, 3, 4]);
  queue.unshift('k', [3, 4]);
  queue.release('k');
  assert.deepEqual(queue.take(4), { key: 'k', items: [3, 4] });
});

test('keyed queue keeps per-key order under random interleaving', () => {
  const queue = new KeyedQueue<{ key: string; seq: number }>();
  const lastSeen = new Map<string, number>();
  let seq = 0;
  let random = 42;
  const next = (): number => {
    random = (random * 1103515245 + 12345) % 2 ** 31;
    return random / 2 ** 31;
  };
  const inFlight: string[] = [];
  for (let step = 0; step < 20_000; step++) {
    const roll = next();
    if (roll < 0.5) {
      const key = `row${Math.floor(next() * 20)}`;
      queue.push(key, { key, seq: seq++ });
    } else if (roll < 0.8) {
      const taken = queue.take(3);
      if (taken === undefined) continue;
      for (const item of taken.items) {
        assert.ok((lastSeen.get(item.key) ?? -1) < item.seq, `order broken for ${item.key}`);
        lastSeen.set(item.key, item.seq);
      }
      inFlight.push(taken.key);
    } else if (inFlight.length > 0) {
      const index = Math.floor(next() * inFlight.length);
      queue.release(inFlight.splice(index, 1)[0]!);
    }
  }
});

test('keyed queue starts a reused key empty', () => {
  const queue = new KeyedQueue<number>();
  for (let round = 0; round < 3; round++) {
    queue.push(`k${round}`, round * 10);
    queue.push(`k${round}`, round * 10 + 1);
    assert.deepEqual(queue.take(), { key: `k${round}`, items: [round * 10] });
    queue.release(`k${round}`);
    assert.deepEqual(queue.take(5), { key: `k${round}`, items: [round * 10 + 1] });
    queue.release(`k${round}`);
    assert.equal(queue.size, 0);
    assert.equal(queue.take(), undefined);
  }
});

test('keyed queue takeInto appends', () => {
  const queue = new KeyedQueue<number>();
  queue.push('a', 1);
  queue.push('a', 2);
  queue.push('b', 3);
  const into = [0];
  assert.equal(queue.takeInto(into, 5), 'a');
  assert.equal(queue.takeInto(into, 5), 'b');
  assert.deepEqual(into, [0, 1, 2, 3]);
  assert.equal(queue.takeInto(into, 5), undefined);
});
