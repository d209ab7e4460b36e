/**
 * Webhook URLs with `{{ path }}` placeholders, filled per event from the envelope:
 * `https://api.example.test/orders/{{ event.data.new.id }}`.
 *
 * A path is a list of keys separated by dots. A key is letters, digits, `_`, `$` and
 * `-`, or any text in double quotes with `""` for a quote inside (`event.data.new."Order Id"`).
 * A key of digits selects an array element. Values are percent-encoded with
 * encodeURIComponent, and numbers keep the digits of the envelope text.
 *
 * Placeholders may appear only after the host, in the path, query or fragment, so
 * row data cannot send an event, with its headers, to another host.
 */
import { readJsonPath } from './json-path.js';

export interface UrlPlaceholder {
  readonly path: readonly string[];
  /** The placeholder as written, such as `{{ event.data.new.id }}`, for messages. */
  readonly source: string;
}

export interface UrlTemplate {
  readonly text: string;
  /** Literal text and placeholders, in order. */
  readonly parts: readonly (string | UrlPlaceholder)[];
  /** The scheme, host and port, which every rendered URL keeps. */
  readonly origin: string;
}

/** A URL template that cannot be used. The message gives the reason. */
export class InvalidUrlTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidUrlTemplateError';
  }
}

/** A URL template that cannot be filled from one event, for example because a value is null. */
export class UrlRenderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UrlRenderError';
  }
}

const BARE_KEY = /[A-Za-z0-9_$-]+/y;

/** Scheme and authority followed by the start of the path, query or fragment. */
const FIXED_ORIGIN_PREFIX = /^https?:\/\/[^/?#]+[/?#]/i;

/**
 * Parses a webhook URL. Throws InvalidUrlTemplateError for an unclosed `{{`, a
 * placeholder that is not a path, a placeholder before the path, or a URL that is not
 * http(s) once the placeholders are filled.
 */
export function parseUrlTemplate(text: string): UrlTemplate {
  const parts: (string | UrlPlaceholder)[] = [];
  let position = 0;
  while (position < text.length) {
    const open = text.indexOf('{{', position);
    if (open < 0) {
      parts.push(text.slice(position));
      break;
    }
    const close = text.indexOf('}}', open + 2);
    if (close < 0) {
      throw new InvalidUrlTemplateError(`'{{' at character ${open} has no closing '}}'`);
    }
    if (open > position) {
      parts.push(text.slice(position, open));
    }
    const source = text.slice(open, close + 2);
    parts.push({ path: parsePlaceholderPath(text.slice(open + 2, close), source), source });
    position = close + 2;
  }

  const sample = parts.map((part) => (typeof part === 'string' ? part : 'x')).join('');
  if (!URL.canParse(sample)) {
    throw new InvalidUrlTemplateError('must be an http(s) URL once the placeholders are filled');
  }
  const url = new URL(sample);
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    throw new InvalidUrlTemplateError('must be an http(s) URL once the placeholders are filled');
  }
  const firstPlaceholder = text.indexOf('{{');
  if (firstPlaceholder >= 0 && !FIXED_ORIGIN_PREFIX.test(text.slice(0, firstPlaceholder))) {
    throw new InvalidUrlTemplateError(
      'placeholders may appear only in the path, query or fragment, after a fixed scheme and host, ' +
        "as in 'https://api.example.test/orders/{{ event.data.new.id }}'",
    );
  }
  return { text, parts, origin: url.origin };
}

function parsePlaceholderPath(inner: string, source: string): string[] {
  const path: string[] = [];
  let position = skipSpaces(inner, 0);
  for (;;) {
    const segment = readSegment(inner, position);
    if (segment === undefined) {
      throw new InvalidUrlTemplateError(
        `invalid placeholder ${source}; write a path such as {{ event.data.new.id }}, with "double quotes" around keys that contain other characters`,
      );
    }
    path.push(segment.key);
    position = skipSpaces(inner, segment.end);
    if (position === inner.length) {
      return path;
    }
    if (inner[position] !== '.') {
      throw new InvalidUrlTemplateError(`invalid placeholder ${source}; separate keys with '.'`);
    }
    position = skipSpaces(inner, position + 1);
  }
}

function readSegment(text: string, start: number): { key: string; end: number } | undefined {
  if (text[start] === '"') {
    let key = '';
    let position = start + 1;
    while (position < text.length) {
      const character = text[position];
      if (character === '"' && text[position + 1] === '"') {
        key += '"';
        position += 2;
        continue;
      }
      if (character === '"') {
        return key === '' ? undefined : { key, end: position + 1 };
      }
      key += character;
      position += 1;
    }
    return undefined;
  }
  BARE_KEY.lastIndex = start;
  const match = BARE_KEY.exec(text);
  return match === null ? undefined : { key: match[0], end: BARE_KEY.lastIndex };
}

function skipSpaces(text: string, position: number): number {
  let current = position;
  while (text[current] === ' ' || text[current] === '\t') {
    current += 1;
  }
  return current;
}

const parsedTemplates = new Map<string, UrlTemplate>();

/**
 * Fills the placeholders from the envelope and returns the URL. `envelopeJson` is the
 * untransformed body, as the envelope builder returns it. A string template is parsed
 * once and cached. Throws UrlRenderError when a placeholder matches nothing, is null,
 * an object or an array, or is `.` or `..`, which would change the path.
 */
export function renderUrl(template: UrlTemplate | string, envelopeJson: string): string {
  const parsed = typeof template === 'string' ? cachedTemplate(template) : template;
  let url = '';
  for (const part of parsed.parts) {
    url += typeof part === 'string' ? part : renderPlaceholder(part, envelopeJson);
  }
  // encodeURIComponent leaves no character that ends the host, so this is a safeguard.
  if (new URL(url).origin !== parsed.origin) {
    throw new UrlRenderError(`the URL filled from ${parsed.text} points to another host`);
  }
  return url;
}

function cachedTemplate(text: string): UrlTemplate {
  let parsed = parsedTemplates.get(text);
  if (parsed === undefined) {
    parsed = parseUrlTemplate(text);
    parsedTemplates.set(text, parsed);
  }
  return parsed;
}

function renderPlaceholder(placeholder: UrlPlaceholder, envelopeJson: string): string {
  const value = readJsonPath(envelopeJson, placeholder.path);
  let text: string;
  switch (value?.type) {
    case undefined:
      throw new UrlRenderError(`URL placeholder ${placeholder.source} matches nothing in this event`);
    case 'null':
      throw new UrlRenderError(`URL placeholder ${placeholder.source} is null in this event`);
    case 'object':
    case 'array':
      throw new UrlRenderError(
        `URL placeholder ${placeholder.source} is an ${value.type} in this event; it must name a string, number or boolean`,
      );
    case 'string':
      text = value.value;
      break;
    case 'number':
      text = value.text;
      break;
    case 'boolean':
      text = String(value.value);
      break;
  }
  if (text === '.' || text === '..') {
    // URL parsing removes dot segments, even percent-encoded ones, which would change the path.
    throw new UrlRenderError(`URL placeholder ${placeholder.source} is '${text}', which would change the URL path`);
  }
  try {
    return encodeURIComponent(text);
  } catch (error) {
    if (error instanceof URIError) {
      throw new UrlRenderError(`URL placeholder ${placeholder.source} contains a lone UTF-16 surrogate, which a URL cannot encode`);
    }
    throw error;
  }
}
