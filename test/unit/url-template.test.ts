import assert from 'node:assert/strict';
import { test } from 'node:test';

import { readJsonPath } from '../../src/filters/json-path.js';
import { parseUrlTemplate, renderUrl, UrlRenderError } from '../../src/filters/url-template.js';

const ENVELOPE =
  '{"id":"e1","table":{"schema":"public","name":"orders"},"event":{"op":"INSERT","data":{"old":null,' +
  '"new":{"id":9007199254740993,"Order Id":"a/b c?d#e","paid":true,"tags":["x","y"],"meta":{"k":1},"dot":"..",' +
  '"price":1.50,"note":null}}},"delivery_info":{"max_retries":null,"current_retry":0}}';

test('url template fills placeholders from the envelope', () => {
  const url = renderUrl('https://example.test/{{ table.name }}/{{event.data.new.id}}?op={{ event.op }}', ENVELOPE);
  assert.equal(url, 'https://example.test/orders/9007199254740993?op=INSERT');
});

test('url template keeps number digits', () => {
  assert.equal(renderUrl('https://example.test/{{ event.data.new.price }}', ENVELOPE), 'https://example.test/1.50');
});

test('url template percent-encodes values', () => {
  const url = renderUrl('https://example.test/orders/{{ event.data.new."Order Id" }}', ENVELOPE);
  assert.equal(url, 'https://example.test/orders/a%2Fb%20c%3Fd%23e');
});

test('url template reads array elements and booleans', () => {
  assert.equal(renderUrl('https://example.test/{{ event.data.new.tags.1 }}/{{ event.data.new.paid }}', ENVELOPE), 'https://example.test/y/true');
});

test('url template rejects values it cannot fill', () => {
  const cases: [string, RegExp][] = [
    ['{{ event.data.old.id }}', /\{\{ event\.data\.old\.id \}\} matches nothing in this event/],
    ['{{ event.data.new.note }}', /is null in this event/],
    ['{{ event.data.new.meta }}', /is an object in this event/],
    ['{{ event.data.new.tags }}', /is an array in this event/],
    ['{{ event.data.new.dot }}', /is '\.\.', which would change the URL path/],
    ['{{ event.data.new.tags.5 }}', /matches nothing/],
  ];
  for (const [placeholder, message] of cases) {
    assert.throws(
      () => renderUrl(`https://example.test/${placeholder}`, ENVELOPE),
      (error: unknown) => error instanceof UrlRenderError && message.test(error.message),
      placeholder,
    );
  }
});

test('url template rejects a lone surrogate', () => {
  assert.throws(
    () => renderUrl('https://example.test/{{ v }}', '{"v":"\\ud800"}'),
    (error: unknown) => error instanceof UrlRenderError && /lone UTF-16 surrogate/.test(error.message),
  );
});

test('url template keeps the host fixed', () => {
  const envelope = '{"v":"@evil.test/x"}';
  assert.equal(renderUrl('https://example.test/{{ v }}', envelope), 'https://example.test/%40evil.test%2Fx');
  assert.equal(renderUrl('https://example.test?{{ v }}', envelope), 'https://example.test?%40evil.test%2Fx');
});

test('url template parses quoted keys and spaces', () => {
  const template = parseUrlTemplate('https://example.test/{{  a . "b ""c"" d" . 0 }}');
  assert.deepEqual(template.parts, ['https://example.test/', { path: ['a', 'b "c" d', '0'], source: '{{  a . "b ""c"" d" . 0 }}' }]);
  assert.equal(template.origin, 'https://example.test');
});

test('url template without placeholders renders unchanged', () => {
  assert.equal(renderUrl('https://example.test/hooks?x={y}', ENVELOPE), 'https://example.test/hooks?x={y}');
});

test('json path reads scalars', () => {
  const text = ' { "a" : { "b" : [ 1 , "two" , { "c" : -1.5e+3 } ] , "a": 2 } , "d": false, "d": true } ';
  assert.deepEqual(readJsonPath(text, ['a', 'b', '2', 'c']), { type: 'number', text: '-1.5e+3' });
  assert.deepEqual(readJsonPath(text, ['a', 'b', '1']), { type: 'string', value: 'two' });
  assert.deepEqual(readJsonPath(text, ['a', 'a']), { type: 'number', text: '2' });
  assert.deepEqual(readJsonPath(text, ['d']), { type: 'boolean', value: true });
  assert.deepEqual(readJsonPath(text, ['a', 'b']), { type: 'array' });
  assert.equal(readJsonPath(text, ['a', 'b', 'x']), undefined);
  assert.equal(readJsonPath(text, ['d', 'x']), undefined);
  assert.equal(readJsonPath(text, ['z']), undefined);
});

test('json path skips tricky strings', () => {
  const text = '{"s":"}]\\"{[","n":{"x":"\\u0041"},"t":"ok"}';
  assert.deepEqual(readJsonPath(text, ['t']), { type: 'string', value: 'ok' });
  assert.deepEqual(readJsonPath(text, ['n', 'x']), { type: 'string', value: 'A' });
});

test('json path handles deep nesting without recursion', () => {
  const depth = 100_000;
  const text = `{"deep":${'['.repeat(depth)}${']'.repeat(depth)},"after":1}`;
  assert.deepEqual(readJsonPath(text, ['after']), { type: 'number', text: '1' });
});
