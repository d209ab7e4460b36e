import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BodyTransform, TransformError, TransformSyntaxError } from '../../src/filters/transform.js';

const ENVELOPE = JSON.stringify({
  id: 'e1',
  trigger: { name: 'order_events' },
  table: { schema: 'public', name: 'orders' },
  event: { op: 'UPDATE', data: { old: { id: 7, status: 'open' }, new: { id: 7, status: 'paid', items: [2, 3] } } },
});

async function rejection(promise: Promise<unknown>): Promise<TransformError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TransformError, `expected a TransformError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the transform to fail');
}

test('transform builds a body from the envelope', async () => {
  const transform = new BodyTransform(
    '{ "order": event.data.new.id, "from": event.data.old.status, "to": event.data.new.status, "count": $sum(event.data.new.items) }',
  );
  assert.equal(await transform.renderBody(ENVELOPE), '{"order":7,"from":"open","to":"paid","count":5}');
});

test('transform sends strings as JSON', async () => {
  assert.equal(await new BodyTransform('event.op').renderBody(ENVELOPE), '"UPDATE"');
});

test('transform loses precision beyond 2^53', async () => {
  const body = await new BodyTransform('{ "id": id }').renderBody('{"id":9007199254740993}');
  assert.equal(body, '{"id":9007199254740992}');
});

test('transform raises a syntax error at compile', () => {
  assert.throws(() => new BodyTransform('{ "a": }'), (error: unknown) => {
    assert.ok(error instanceof TransformSyntaxError);
    assert.match(error.message, /^invalid JSONata expression: .* at character 8 \(S0211\)$/);
    return true;
  });
});

test('transform rejects an undefined result', async () => {
  const error = await rejection(new BodyTransform('event.data.new.missing').renderBody(ENVELOPE));
  assert.match(error.message, /returned no value/);
});

test('transform rejects results without a JSON form', async () => {
  const infinity = await rejection(new BodyTransform('{ "x": 1 / 0 }').renderBody(ENVELOPE));
  assert.match(infinity.message, /number Infinity/);
  const lambda = await rejection(new BodyTransform('function($x) { $x }').renderBody(ENVELOPE));
  assert.match(lambda.message, /returned a function/);
  const builtin = await rejection(new BodyTransform('$string').renderBody(ENVELOPE));
  assert.match(builtin.message, /returned a function/);
});

test('transform reports evaluation errors with their code', async () => {
  const error = await rejection(new BodyTransform('$unknownFunction(1)').renderBody(ENVELOPE));
  assert.equal(error.code, 'T1006');
  assert.match(error.message, /^transform\.body failed: /);
});

test('transform stops an endless recursion', async () => {
  const error = await rejection(new BodyTransform('($loop := function($n) { $loop($n + 1) }; $loop(0))').renderBody(ENVELOPE));
  assert.ok(error.code === 'D1011' || error.code === 'D1012', `code ${String(error.code)}`);
});

test('transform stops an endless loop by time', async () => {
  const start = Date.now();
  const error = await rejection(
    new BodyTransform('($count := function($n) { $n < 100000000 ? $count($n + 1) : $n }; $count(0))').renderBody(ENVELOPE),
  );
  assert.ok(error.code === 'D1011' || error.code === 'D1012', `code ${String(error.code)}`);
  assert.ok(Date.now() - start < 5000);
});

test('transform allows moderate recursion', async () => {
  const body = await new BodyTransform('($f := function($n) { $n <= 1 ? 1 : $n + $f($n - 1) }; $f(200))').renderBody(ENVELOPE);
  assert.equal(body, '20100');
});

test('transform renders events concurrently', async () => {
  const transform = new BodyTransform('{ "id": id }');
  const bodies = await Promise.all([1, 2, 3].map((id) => transform.renderBody(`{"id":${id}}`)));
  assert.deepEqual(bodies, ['{"id":1}', '{"id":2}', '{"id":3}']);
});
