import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ArrayLiteralError, parseArrayLiteral } from '../../src/pipeline/array-parse.js';
import {
  CompositeLiteralError,
  parseCompositeLiteral,
} from '../../src/pipeline/composite-parse.js';
import { HstoreLiteralError, parseHstoreLiteral } from '../../src/pipeline/hstore-parse.js';
import {
  JsonNumber,
  JsonSyntaxError,
  isAmbiguousWal2jsonNull,
  parseExactJson,
  wal2jsonColumnText,
} from '../../src/pipeline/wal2json-parse.js';

describe('array literal parser', () => {
  test('plain elements', () => {
    assert.deepEqual(parseArrayLiteral('{1,2,3}'), ['1', '2', '3']);
  });

  test('empty array', () => {
    assert.deepEqual(parseArrayLiteral('{}'), []);
  });

  test('NULL versus quoted "NULL"', () => {
    assert.deepEqual(parseArrayLiteral('{NULL,"NULL",null,"null",NULLX}'), [
      null,
      'NULL',
      null,
      'null',
      'NULLX',
    ]);
  });

  test('quoted elements with quotes and backslashes', () => {
    const text = String.raw`{"a \"b\"","c\\d","{x}","e,f",""," "}`;
    assert.deepEqual(parseArrayLiteral(text), ['a "b"', 'c\\d', '{x}', 'e,f', '', ' ']);
  });

  test('quoted elements with newlines and unicode', () => {
    const elements = parseArrayLiteral('{"line 1\nline 2","ü😀"}');
    assert.deepEqual(elements, ['line 1\nline 2', 'ü😀']);
  });

  test('nested dimensions', () => {
    assert.deepEqual(parseArrayLiteral('{{1,2},{3,NULL}}'), [
      ['1', '2'],
      ['3', null],
    ]);
    assert.deepEqual(parseArrayLiteral('{{{a}},{{b}}}'), [[['a']], [['b']]]);
  });

  test('custom lower bounds are dropped', () => {
    assert.deepEqual(parseArrayLiteral('[0:1]={1,2}'), ['1', '2']);
    assert.deepEqual(parseArrayLiteral('[-2:-1][3:4]={{a,b},{c,d}}'), [
      ['a', 'b'],
      ['c', 'd'],
    ]);
  });

  test('box delimiter', () => {
    assert.deepEqual(parseArrayLiteral('{(1,1),(0,0);(2,2),(1,1)}', ';'), [
      '(1,1),(0,0)',
      '(2,2),(1,1)',
    ]);
  });

  test('whitespace around unquoted elements is dropped', () => {
    assert.deepEqual(parseArrayLiteral('{ a b , c }'), ['a b', 'c']);
    assert.deepEqual(parseArrayLiteral(' { {1} , {2} } '), [['1'], ['2']]);
  });

  test('backslash in unquoted element', () => {
    assert.deepEqual(parseArrayLiteral(String.raw`{a\,b,NUL\L}`), ['a,b', 'NULL']);
  });

  test('composite elements keep their own quoting', () => {
    const text = String.raw`{"(1,\"x y\")","(2,)"}`;
    assert.deepEqual(parseArrayLiteral(text), ['(1,"x y")', '(2,)']);
  });

  test('malformed literals raise', () => {
    for (const text of ['', '1,2', '{1,2', '{"a}', '{a"b}', '{1,,2}', '{1}x', '[0:1]{1}', '{1\\']) {
      const message = `text ${JSON.stringify(text)}`;
      assert.throws(() => parseArrayLiteral(text), ArrayLiteralError, message);
    }
  });
});

describe('composite literal parser', () => {
  test('plain fields', () => {
    assert.deepEqual(parseCompositeLiteral('(1,abc,2.5)'), ['1', 'abc', '2.5']);
  });

  test('empty field is NULL, quoted empty field is empty', () => {
    assert.deepEqual(parseCompositeLiteral('(,"",x,)'), [null, '', 'x', null]);
  });

  test('single NULL field', () => {
    assert.deepEqual(parseCompositeLiteral('()'), [null]);
  });

  test('quoted fields with doubled quotes and backslashes', () => {
    const text = String.raw`("say ""hi""","a\\b","(x,y)"," lead")`;
    assert.deepEqual(parseCompositeLiteral(text), ['say "hi"', 'a\\b', '(x,y)', ' lead']);
  });

  test('whitespace is kept', () => {
    assert.deepEqual(parseCompositeLiteral('( a , b )'), [' a ', ' b ']);
  });

  test('nested composite and array text', () => {
    const text = String.raw`(1,"(2,""x y"")","{""a b"",NULL}")`;
    assert.deepEqual(parseCompositeLiteral(text), ['1', '(2,"x y")', '{"a b",NULL}']);
  });

  test('partly quoted field and backslash outside quotes', () => {
    assert.deepEqual(parseCompositeLiteral(String.raw`(a"b,c"d,\,)`), ['ab,cd', ',']);
  });

  test('the word NULL is text', () => {
    assert.deepEqual(parseCompositeLiteral('(NULL)'), ['NULL']);
  });

  test('malformed literals raise', () => {
    for (const text of ['', '1,2', '(1,2', '("a)', '(1)x', '(a\\']) {
      const message = `text ${JSON.stringify(text)}`;
      assert.throws(() => parseCompositeLiteral(text), CompositeLiteralError, message);
    }
  });
});

describe('hstore literal parser', () => {
  test('output form', () => {
    const text = String.raw`"a"=>"1", "b c"=>NULL, "d\"q"=>"x\\y", "NULL"=>"NULL", ""=>""`;
    assert.deepEqual(parseHstoreLiteral(text), [
      ['a', '1'],
      ['b c', null],
      ['d"q', 'x\\y'],
      ['NULL', 'NULL'],
      ['', ''],
    ]);
  });

  test('empty hstore', () => {
    assert.deepEqual(parseHstoreLiteral(''), []);
  });

  test('unquoted input form', () => {
    assert.deepEqual(parseHstoreLiteral('a=>1,b => null , c=>x'), [
      ['a', '1'],
      ['b', null],
      ['c', 'x'],
    ]);
  });

  test('malformed literals raise', () => {
    for (const text of ['a', 'a=>', '"a=>1', 'a=>1 b=>2', '=>1']) {
      const message = `text ${JSON.stringify(text)}`;
      assert.throws(() => parseHstoreLiteral(text), HstoreLiteralError, message);
    }
  });
});

describe('exact JSON parser', () => {
  test('numbers keep their text', () => {
    const value = parseExactJson('[9007199254740993, 1.50, -0, 1e400, 0.1]');
    assert.deepEqual(value, [
      new JsonNumber('9007199254740993'),
      new JsonNumber('1.50'),
      new JsonNumber('-0'),
      new JsonNumber('1e400'),
      new JsonNumber('0.1'),
    ]);
  });

  test('objects become maps in text order', () => {
    const value = parseExactJson(' { "b" : true , "a" : [null, false], "b" : "x" } ');
    assert.ok(value instanceof Map);
    assert.deepEqual([...value.entries()], [
      ['b', 'x'],
      ['a', [null, false]],
    ]);
  });

  test('strings decode escapes', () => {
    const value = parseExactJson(String.raw`"q\"\\\/\n\u00e9\ud83d\ude00"`);
    assert.equal(value, 'q"\\/\né😀');
  });

  test('empty containers', () => {
    assert.deepEqual(parseExactJson('[]'), []);
    assert.deepEqual(parseExactJson('{}'), new Map());
  });

  test('invalid JSON raises', () => {
    const invalid = ['', '[1,]', '{"a" 1}', '01', '1.', '"a\nb"', 'nul', '[1] x', "'a'", '{a:1}'];
    for (const text of invalid) {
      const message = `text ${JSON.stringify(text)}`;
      assert.throws(() => parseExactJson(text), JsonSyntaxError, message);
    }
  });
});

describe('wal2json column values', () => {
  test('map back to text output', () => {
    assert.equal(wal2jsonColumnText(new JsonNumber('9007199254740993'), 20), '9007199254740993');
    assert.equal(wal2jsonColumnText(true, 16), 't');
    assert.equal(wal2jsonColumnText(false, 16), 'f');
    assert.equal(wal2jsonColumnText('{1,NULL}', 1007), '{1,NULL}');
    assert.equal(wal2jsonColumnText('{ "a" : 1 }', 114), '{ "a" : 1 }');
    assert.equal(wal2jsonColumnText(null, 25), null);
  });

  test('bytea gets its hex prefix back', () => {
    assert.equal(wal2jsonColumnText('00ff', 17), '\\x00ff');
    assert.equal(wal2jsonColumnText('', 17), '\\x');
    assert.equal(wal2jsonColumnText('{"\\\\x00"}', 1001), '{"\\\\x00"}');
  });

  test('arrays and objects raise', () => {
    assert.throws(() => wal2jsonColumnText([], 25), TypeError);
    assert.throws(() => wal2jsonColumnText(new Map(), 25), TypeError);
  });

  test('null is ambiguous for float and numeric only', () => {
    assert.equal(isAmbiguousWal2jsonNull(700), true);
    assert.equal(isAmbiguousWal2jsonNull(701), true);
    assert.equal(isAmbiguousWal2jsonNull(1700), true);
    assert.equal(isAmbiguousWal2jsonNull(20), false);
    assert.equal(isAmbiguousWal2jsonNull(1231), false);
  });
});
