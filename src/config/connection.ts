/**
 * Connection strings. The file may hold a libpq URL or a libpq key=value string, but
 * node-postgres (pg-connection-string 2.x) reads only URLs, so key=value strings are
 * converted to an equivalent `postgres://` URL here.
 */

const URL_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

const KEYWORD = /^[A-Za-z_]+$/;

/**
 * A connection string that cannot be read. The message names keywords but never
 * repeats a value, because values include the password.
 */
export class InvalidConnectionStringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidConnectionStringError';
  }
}

/**
 * Returns a `postgres://` or `postgresql://` URL unchanged and converts a key=value
 * string to a URL. Throws InvalidConnectionStringError for anything else.
 */
export function normalizeConnectionString(text: string): string {
  if (text.trim() === '') {
    throw new InvalidConnectionStringError(
      'the connection string is empty; set a postgres:// URL or key=value string',
    );
  }

  const scheme = URL_SCHEME.exec(text)?.[1];
  if (scheme !== undefined) {
    if (!/^postgres(?:ql)?$/i.test(scheme)) {
      throw new InvalidConnectionStringError(
        `expected a postgres:// or postgresql:// URL or a key=value string, got a ${scheme}:// URL`,
      );
    }
    return text;
  }
  return keyValueToUrl(parseKeyValueString(text));
}

/**
 * Parses libpq's `keyword = value` syntax: pairs separated by spaces, values optionally
 * in single quotes, and a backslash escaping the next character. A later keyword wins
 * over an earlier one, as in libpq.
 */
export function parseKeyValueString(text: string): Map<string, string> {
  const settings = new Map<string, string>();
  let pairCount = 0;
  let position = skipSpaces(text, 0);

  while (position < text.length) {
    const keywordEnd = findKeywordEnd(text, position);
    const keyword = text.slice(position, keywordEnd);
    position = skipSpaces(text, keywordEnd);

    if (!KEYWORD.test(keyword)) {
      throw new InvalidConnectionStringError(
        'expected a postgres:// URL or keyword=value pairs, where a keyword contains only letters and _',
      );
    }
    if (text[position] !== '=') {
      // The word is not repeated, because it may be a misplaced password.
      throw new InvalidConnectionStringError(
        `expected a postgres:// URL or keyword=value pairs, but '=' is missing after word ${pairCount + 1}`,
      );
    }

    const value = readValue(text, skipSpaces(text, position + 1), keyword);
    settings.set(keyword, value.text);
    pairCount += 1;
    position = skipSpaces(text, value.end);
  }
  return settings;
}

/**
 * Builds a URL that pg-connection-string 2.x reads back into the same settings:
 * dbname in the path, every other keyword as a query parameter.
 *
 * NOTE: keywords that node-postgres does not support (service, passfile, hostaddr and
 * others) are passed on as query parameters, and node-postgres ignores them.
 */
function keyValueToUrl(settings: ReadonlyMap<string, string>): string {
  const query = new URLSearchParams();
  let database = '';

  for (const [keyword, value] of settings) {
    if (keyword === 'dbname') {
      database = value;
    } else {
      query.set(keyword, value);
    }
  }

  // pg-connection-string reads the path with decodeURI, which undoes encodeURI but
  // leaves %3F and %23 encoded, so a name with ? or # cannot be carried.
  if (/[?#]/.test(database)) {
    throw new InvalidConnectionStringError(
      'dbname contains ? or #, which a connection URL cannot carry; rename the database or use another',
    );
  }
  let path: string;
  try {
    path = encodeURI(database);
  } catch (error) {
    if (!(error instanceof URIError)) {
      throw error;
    }
    throw new InvalidConnectionStringError('dbname contains an unpaired UTF-16 surrogate, which is not valid text');
  }
  const search = query.size > 0 ? `?${query.toString()}` : '';
  return `postgres:///${path}${search}`;
}

interface ValueEnd {
  readonly text: string;
  readonly end: number;
}

function readValue(text: string, start: number, keyword: string): ValueEnd {
  const quoted = text[start] === "'";
  let position = quoted ? start + 1 : start;
  let value = '';

  while (position < text.length) {
    const character = text[position] ?? '';
    if (quoted && character === "'") {
      return { text: value, end: position + 1 };
    }
    if (!quoted && /\s/.test(character)) {
      break;
    }
    if (character === '\\' && position + 1 < text.length) {
      position += 1;
      value += text[position] ?? '';
    } else {
      value += character;
    }
    position += 1;
  }

  if (quoted) {
    throw new InvalidConnectionStringError(`the quoted value of ${keyword} has no closing '`);
  }
  return { text: value, end: position };
}

function findKeywordEnd(text: string, start: number): number {
  let position = start;
  while (position < text.length && text[position] !== '=' && !/\s/.test(text[position] ?? '')) {
    position += 1;
  }
  return position;
}

function skipSpaces(text: string, start: number): number {
  let position = start;
  while (position < text.length && /\s/.test(text[position] ?? '')) {
    position += 1;
  }
  return position;
}
