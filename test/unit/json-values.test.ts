import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ArrayLiteralError } from '../../src/pipeline/array-parse.js';
import {
  encodeValue,
  isoTimestampToXsd,
  isoTimestamptzToXsd,
  quoteJson,
} from '../../src/pipeline/json-values.js';
import type { EncodeFallback } from '../../src/pipeline/json-values.js';
import { TypeRegistry, builtinType } from '../../src/pipeline/pg-types.js';
import type { CatalogQuery, PgType, TypeLookup } from '../../src/pipeline/pg-types.js';

// User type OIDs as a database might assign them.
const MOOD = 16500;
const MOOD_ARRAY = 16499;
const POSITIVE_INT8 = 16501;
const INNER = 16502;
const INNER_ARRAY = 16503;
const OUTER = 16504;
const HSTORE = 16505;
const POINT3D = 16506;

const userTypes = new Map<number, PgType>([
  [MOOD, { kind: 'scalar', category: 'text' }],
  [MOOD_ARRAY, { kind: 'array', elementOid: MOOD, delimiter: ',' }],
  [POSITIVE_INT8, { kind: 'domain', baseOid: 20 }],
  [
    INNER,
    {
      kind: 'composite',
      attributes: [
        { name: 'n', typeOid: POSITIVE_INT8 },
        { name: 'at', typeOid: 1184 },
        { name: 'tags', typeOid: 1009 },
      ],
    },
  ],
  [INNER_ARRAY, { kind: 'array', elementOid: INNER, delimiter: ',' }],
  [
    OUTER,
    {
      kind: 'composite',
      attributes: [
        { name: 'Inner Value', typeOid: INNER },
        { name: 'list', typeOid: INNER_ARRAY },
        { name: 'doc', typeOid: 3802 },
      ],
    },
  ],
  [HSTORE, { kind: 'scalar', category: 'hstore' }],
  [POINT3D, { kind: 'jsonCast', castFunction: 'point3d_to_json' }],
]);

const types: TypeLookup = { lookup: (oid) => builtinType(oid) ?? userTypes.get(oid) };

function encode(typeOid: number, text: string, stringifyNumeric = false): string {
  return encodeValue(typeOid, text, { types, stringifyNumeric });
}

describe('encodeValue scalars', () => {
  test('bool', () => {
    assert.equal(encode(16, 't'), 'true');
    assert.equal(encode(16, 'f'), 'false');
  });

  test('integers keep their digits', () => {
    assert.equal(encode(21, '-32768'), '-32768');
    assert.equal(encode(23, '2147483647'), '2147483647');
    assert.equal(encode(20, '9007199254740993'), '9007199254740993');
    assert.equal(encode(20, '-9223372036854775808'), '-9223372036854775808');
  });

  test('numeric keeps digits and trailing zeros', () => {
    const digits = '12345678901234567890123456789012345678901234567890.1234500';
    assert.equal(encode(1700, digits), digits);
  });

  test('non-finite numbers become strings', () => {
    assert.equal(encode(1700, 'NaN'), '"NaN"');
    assert.equal(encode(1700, 'Infinity'), '"Infinity"');
    assert.equal(encode(701, '-Infinity'), '"-Infinity"');
    assert.equal(encode(700, 'NaN'), '"NaN"');
  });

  test('float text stays as printed', () => {
    assert.equal(encode(701, '-0'), '-0');
    assert.equal(encode(701, '5e-324'), '5e-324');
    assert.equal(encode(701, '1.7976931348623157e+308'), '1.7976931348623157e+308');
    assert.equal(encode(700, '1.4e-45'), '1.4e-45');
  });

  test('stringifyNumeric quotes int8, numeric, float4 and float8 only', () => {
    assert.equal(encode(20, '9007199254740993', true), '"9007199254740993"');
    assert.equal(encode(1700, '1.50', true), '"1.50"');
    assert.equal(encode(700, '1.5', true), '"1.5"');
    assert.equal(encode(701, 'NaN', true), '"NaN"');
    assert.equal(encode(21, '7', true), '7');
    assert.equal(encode(23, '7', true), '7');
  });

  test('oid, money and xid are strings', () => {
    assert.equal(encode(26, '4294967295'), '"4294967295"');
    assert.equal(encode(790, '$1,000.00'), '"$1,000.00"');
    assert.equal(encode(28, '5'), '"5"');
  });

  test('json is embedded as stored', () => {
    const json = '{ "b" : [1, 2.50],\n "a": 12345678901234567891 }';
    assert.equal(encode(114, json), json);
    assert.equal(encode(3802, '{"a": 1}'), '{"a": 1}');
  });

  test('text escapes control characters, quotes and backslashes', () => {
    const text = 'a"b\\c\n\t\u0001ü😀';
    const json = encode(25, text);
    assert.equal(JSON.parse(json), text);
    assert.equal(json, '"a\\"b\\\\c\\n\\t\\u0001ü😀"');
  });

  test('date stays as printed', () => {
    assert.equal(encode(1082, '2024-03-10'), '"2024-03-10"');
    assert.equal(encode(1082, '0044-03-15 BC'), '"0044-03-15 BC"');
    assert.equal(encode(1082, '-infinity'), '"-infinity"');
  });

  test('timestamp gets a T separator', () => {
    assert.equal(encode(1114, '2024-03-10 12:34:56.789123'), '"2024-03-10T12:34:56.789123"');
    assert.equal(encode(1114, '0044-03-15 12:00:00 BC'), '"0044-03-15T12:00:00 BC"');
    assert.equal(encode(1114, '294276-12-31 23:59:59.999999'), '"294276-12-31T23:59:59.999999"');
    assert.equal(encode(1114, 'infinity'), '"infinity"');
  });

  test('timestamptz gets a T separator and offset minutes', () => {
    const text = '2024-03-10 12:34:56.789123+00';
    assert.equal(encode(1184, text), '"2024-03-10T12:34:56.789123+00:00"');
    assert.equal(encode(1184, '0044-03-15 12:00:01.5+00 BC'), '"0044-03-15T12:00:01.5+00:00 BC"');
    assert.equal(encode(1184, '-infinity'), '"-infinity"');
  });

  test('time, timetz and interval stay as printed', () => {
    assert.equal(encode(1083, '24:00:00'), '"24:00:00"');
    assert.equal(encode(1266, '12:00:00+05:30'), '"12:00:00+05:30"');
    assert.equal(encode(1186, '1 year 2 mons 04:05:06.789'), '"1 year 2 mons 04:05:06.789"');
  });

  test('unknown type becomes a string', () => {
    assert.equal(encode(99999, '{1,2}'), '"{1,2}"');
    assert.equal(encodeValue(MOOD, 'happy'), '"happy"');
  });

  test('unrecognised bool and number text becomes a string', () => {
    assert.equal(encode(16, 'true'), '"true"');
    assert.equal(encode(23, '1e'), '"1e"');
  });
});

describe('timestamp conversion helpers', () => {
  test('offsets with minutes and seconds', () => {
    assert.equal(isoTimestamptzToXsd('2024-03-10 12:34:56+05:30'), '2024-03-10T12:34:56+05:30');
    const withSeconds = '1900-01-01 00:00:00-00:01:15';
    assert.equal(isoTimestamptzToXsd(withSeconds), '1900-01-01T00:00:00-00:01:15');
    assert.equal(isoTimestamptzToXsd('2024-03-10 12:34:56-08'), '2024-03-10T12:34:56-08:00');
  });

  test('other DateStyle output is left alone', () => {
    assert.equal(isoTimestampToXsd('Sun Mar 10 12:34:56 2024'), 'Sun Mar 10 12:34:56 2024');
    assert.equal(isoTimestamptzToXsd('10/03/2024 12:34:56 UTC'), '10/03/2024 12:34:56 UTC');
  });
});

describe('encodeValue arrays', () => {
  test('NULL elements and quoted "NULL"', () => {
    assert.equal(encode(1009, '{a,NULL,"NULL",""}'), '["a",null,"NULL",""]');
  });

  test('elements convert by element type', () => {
    assert.equal(encode(1016, '{9007199254740993,NULL}'), '[9007199254740993,null]');
    assert.equal(encode(1000, '{t,f}'), '[true,false]');
    assert.equal(encode(1231, '{1.5,NaN}'), '[1.5,"NaN"]');
    assert.equal(encode(1185, '{"2020-01-01 10:00:00+00"}'), '["2020-01-01T10:00:00+00:00"]');
    assert.equal(encode(199, String.raw`{"{\"a\": 1}",NULL}`), '[{"a": 1},null]');
  });

  test('multi-dimensional and custom bounds', () => {
    assert.equal(encode(1007, '{{1,2},{3,NULL}}'), '[[1,2],[3,null]]');
    assert.equal(encode(1007, '[0:1]={1,2}'), '[1,2]');
    assert.equal(encode(1007, '{}'), '[]');
  });

  test('box arrays split on semicolons', () => {
    assert.equal(encode(1020, '{(1,1),(0,0);(2,2),(1,1)}'), '["(1,1),(0,0)","(2,2),(1,1)"]');
  });

  test('int2vector and oidvector', () => {
    assert.equal(encode(22, '1 2 3'), '[1,2,3]');
    assert.equal(encode(30, '1 2'), '["1","2"]');
    assert.equal(encode(22, ''), '[]');
    assert.equal(encode(1006, '{"1 2",3}'), '[[1,2],[3]]');
  });

  test('enum arrays', () => {
    const text = String.raw`{happy,"it's, \"odd\""}`;
    assert.equal(encode(MOOD_ARRAY, text), '["happy","it\'s, \\"odd\\""]');
  });

  test('stringifyNumeric inside arrays', () => {
    assert.equal(encode(1016, '{1,2}', true), '["1","2"]');
    assert.equal(encode(1007, '{1,2}', true), '[1,2]');
  });

  test('malformed array text becomes a string', () => {
    assert.equal(encode(1007, '{1,2'), '"{1,2"');
  });
});

describe('encodeValue domains and composites', () => {
  test('domain encodes as its base type', () => {
    assert.equal(encode(POSITIVE_INT8, '9007199254740993'), '9007199254740993');
    assert.equal(encode(POSITIVE_INT8, '5', true), '"5"');
  });

  test('composite becomes an object by attribute name', () => {
    const text = String.raw`(7,"2020-01-01 00:00:00+00","{""x y"",NULL}")`;
    const json = '{"n":7,"at":"2020-01-01T00:00:00+00:00","tags":["x y",null]}';
    assert.equal(encode(INNER, text), json);
  });

  test('NULL attributes', () => {
    assert.equal(encode(INNER, '(,,)'), '{"n":null,"at":null,"tags":null}');
  });

  test('nested composites and arrays of composites', () => {
    // Text output of PostgreSQL 18 for this value.
    const text = '("(1,,{a})","{""(2,,{})"",NULL}","{""k"": [1]}")';
    assert.equal(
      encode(OUTER, text),
      '{"Inner Value":{"n":1,"at":null,"tags":["a"]},' +
        '"list":[{"n":2,"at":null,"tags":[]},null],"doc":{"k": [1]}}',
    );
  });

  test('stringifyNumeric inside composites', () => {
    assert.equal(encode(INNER, '(7,,)', true), '{"n":"7","at":null,"tags":null}');
  });

  test('composite with a changed attribute count becomes a string', () => {
    assert.equal(encode(INNER, '(1,2)'), '"(1,2)"');
  });

  test('hstore becomes an object of strings', () => {
    const text = String.raw`"a"=>"1", "b c"=>NULL, "d\"q"=>"x\\y"`;
    assert.equal(encode(HSTORE, text), '{"a":"1","b c":null,"d\\"q":"x\\\\y"}');
    assert.equal(encode(HSTORE, ''), '{}');
  });

  test('type with an unsupported json cast becomes a string', () => {
    assert.equal(encode(POINT3D, '(1,2,3)'), '"(1,2,3)"');
  });
});

describe('encodeValue fallbacks', () => {
  function fallbacksOf(typeOid: number, text: string): EncodeFallback[] {
    const fallbacks: EncodeFallback[] = [];
    encodeValue(typeOid, text, { types, onFallback: (fallback) => fallbacks.push(fallback) });
    return fallbacks;
  }

  test('reported with type and reason', () => {
    assert.deepEqual(fallbacksOf(99999, 'x'), [{ typeOid: 99999, reason: 'unknown type' }]);
    assert.deepEqual(fallbacksOf(POINT3D, '(1)'), [
      { typeOid: POINT3D, reason: 'unsupported json cast' },
    ]);
    assert.deepEqual(fallbacksOf(INNER, '(1,2)'), [
      { typeOid: INNER, reason: 'attribute count mismatch' },
    ]);
  });

  test('invalid text carries the parser error', () => {
    const [fallback, ...rest] = fallbacksOf(1007, '{1,2');
    assert.deepEqual(rest, []);
    assert.equal(fallback?.typeOid, 1007);
    assert.equal(fallback?.reason, 'invalid text');
    assert.ok(fallback?.error instanceof ArrayLiteralError);
  });

  test('unknown element type inside an array', () => {
    const fallbacks = fallbacksOf(MOOD_ARRAY, '{happy}');
    assert.deepEqual(fallbacks, []);
    const unknownElements = new Map<number, PgType>([
      [17000, { kind: 'array', elementOid: 17001, delimiter: ',' }],
    ]);
    const seen: EncodeFallback[] = [];
    const json = encodeValue(17000, '{a,b}', {
      types: { lookup: (oid) => unknownElements.get(oid) },
      onFallback: (fallback) => seen.push(fallback),
    });
    assert.equal(json, '["a","b"]');
    assert.equal(seen.length, 2);
    assert.deepEqual(seen[0], { typeOid: 17001, reason: 'unknown type' });
  });

  test('domain cycle stops at the nesting limit', () => {
    const cycle = new Map<number, PgType>([
      [18000, { kind: 'domain', baseOid: 18001 }],
      [18001, { kind: 'domain', baseOid: 18000 }],
    ]);
    const seen: EncodeFallback[] = [];
    const json = encodeValue(18000, 'x', {
      types: { lookup: (oid) => cycle.get(oid) },
      onFallback: (fallback) => seen.push(fallback),
    });
    assert.equal(json, '"x"');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.reason, 'nesting too deep');
  });

  test('none for known types', () => {
    assert.deepEqual(fallbacksOf(OUTER, '(,,)'), []);
    assert.deepEqual(fallbacksOf(1184, 'infinity'), []);
  });
});

/** A catalog stand-in that returns fixed rows for TypeRegistry's queries. */
function fakeCatalog(): { query: CatalogQuery; requestedOids: number[][] } {
  const typeRows: Record<string, unknown>[] = [
    { oid: '16600', typtype: 'b', base_oid: '0', element_oid: '16601', element_delimiter: ',' },
    { oid: '16601', typtype: 'c', base_oid: '0', element_oid: null, element_delimiter: null },
    { oid: '16602', typtype: 'd', base_oid: '16603', element_oid: null, element_delimiter: null },
    { oid: '16603', typtype: 'e', base_oid: '0', element_oid: null, element_delimiter: null },
    {
      oid: '16604',
      typtype: 'b',
      base_oid: '0',
      element_oid: null,
      element_delimiter: null,
      json_cast_function: 'hstore_to_json',
    },
  ];
  const attributeRows: Record<string, unknown>[] = [
    { type_oid: '16601', name: 'd', attribute_type_oid: '16602' },
    { type_oid: '16601', name: 'n', attribute_type_oid: '20' },
  ];
  const requestedOids: number[][] = [];
  const query: CatalogQuery = async (sql, params) => {
    if (sql.includes('unnest')) {
      return [{ oid: '16600' }, { oid: '23' }];
    }
    const oids = (params[0] as number[]).map(String);
    if (sql.includes('pg_attribute')) {
      return attributeRows.filter((row) => oids.includes(row.type_oid as string));
    }
    requestedOids.push(params[0] as number[]);
    return typeRows.filter((row) => oids.includes(row.oid as string));
  };
  return { query, requestedOids };
}

describe('TypeRegistry', () => {
  test('built-in types need no load', () => {
    const registry = new TypeRegistry(fakeCatalog().query);
    assert.deepEqual(registry.unknownOids([16, 1184, 1007, 3912]), []);
    assert.deepEqual(registry.lookup(1020), { kind: 'array', elementOid: 603, delimiter: ';' });
  });

  test('unknownOids lists each unknown OID once', () => {
    const registry = new TypeRegistry(fakeCatalog().query);
    assert.deepEqual(registry.unknownOids([16600, 23, 16600, 16604]), [16600, 16604]);
  });

  test('load follows arrays, composites and domains', async () => {
    const catalog = fakeCatalog();
    const registry = new TypeRegistry(catalog.query);
    await registry.load([16600]);

    assert.deepEqual(registry.unknownOids([16600, 16601, 16602, 16603]), []);
    assert.deepEqual(catalog.requestedOids, [[16600], [16601], [16602], [16603]]);
    assert.deepEqual(registry.lookup(16601), {
      kind: 'composite',
      attributes: [
        { name: 'd', typeOid: 16602 },
        { name: 'n', typeOid: 20 },
      ],
    });
    assert.equal(
      encodeValue(16600, '{"(happy,9007199254740993)",NULL}', { types: registry }),
      '[{"d":"happy","n":9007199254740993},null]',
    );
  });

  test('load skips OIDs that the catalog lacks', async () => {
    const catalog = fakeCatalog();
    const registry = new TypeRegistry(catalog.query);
    await registry.load([99999, 16603]);
    assert.deepEqual(registry.unknownOids([99999, 16603]), [99999]);
    assert.deepEqual(catalog.requestedOids, [[99999, 16603]]);
  });

  test('load recognises the hstore cast', async () => {
    const registry = new TypeRegistry(fakeCatalog().query);
    await registry.load([16604]);
    assert.deepEqual(registry.lookup(16604), { kind: 'scalar', category: 'hstore' });
  });

  test('loadTables loads column types', async () => {
    const registry = new TypeRegistry(fakeCatalog().query);
    await registry.loadTables([{ schema: 'public', name: 'events' }]);
    assert.deepEqual(registry.unknownOids([16600, 16601, 16602, 16603]), []);
  });
});

test('quoteJson matches JSON.stringify', () => {
  for (let code = 0; code <= 0xffff; code++) {
    const text = `a${String.fromCharCode(code)}b`;
    assert.equal(quoteJson(text), JSON.stringify(text), `code unit ${code.toString(16)}`);
  }
  for (const text of ['', '\ud83d\ude00', 'x\udc00\ud800y', 'plain text']) {
    assert.equal(quoteJson(text), JSON.stringify(text));
  }
});
