/**
 * The `transform.body` option: a JSONata expression, evaluated by the `jsonata` npm
 * package 2.x, that builds the request body from the envelope.
 *
 * The expression receives the envelope as JSON.parse returns it, so integers beyond 2^53
 * (int8 and numeric values) lose precision inside a transform. The untransformed body
 * never does, because walhook builds it as text.
 */
import jsonata from 'jsonata';

/**
 * Maximum evaluation time of one transform in milliseconds. JSONata checks it between
 * evaluation steps, so a single slow built-in call can overrun it.
 */
export const TRANSFORM_TIMEOUT_MS = 1000;

/**
 * Maximum JSONata evaluation depth. Each level of a recursive JSONata function uses
 * about three, so this allows about 300 levels (measured with jsonata 2.2.2).
 */
export const TRANSFORM_MAX_DEPTH = 1000;

/** A JSONata expression that does not parse. The message includes the character position. */
export class TransformSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransformSyntaxError';
  }
}

/**
 * A transform that failed for one event: a JSONata error such as a type error, a
 * timeout, or a result that is not JSON. `code` is JSONata's error code when there is one.
 */
export class TransformError extends Error {
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(message);
    this.name = 'TransformError';
    this.code = code;
  }
}

/** JSONata raises plain objects, not Error instances, with these fields. */
interface JsonataFailure {
  readonly code: string;
  readonly message?: string;
  readonly position?: number;
  readonly token?: string;
}

function isJsonataFailure(value: unknown): value is JsonataFailure {
  return typeof value === 'object' && value !== null && typeof (value as { code?: unknown }).code === 'string';
}

function describeFailure(failure: JsonataFailure): string {
  const message = failure.message ?? 'unknown error';
  return failure.position === undefined ? `${message} (${failure.code})` : `${message} at character ${failure.position} (${failure.code})`;
}

/** A compiled body transform. One instance may render many events at once. */
export class BodyTransform {
  readonly expression: string;
  readonly #compiled: jsonata.Expression;

  /** Compiles the expression. Throws TransformSyntaxError when it does not parse. */
  constructor(expression: string) {
    this.expression = expression;
    try {
      this.#compiled = jsonata(expression, { timeout: TRANSFORM_TIMEOUT_MS, stack: TRANSFORM_MAX_DEPTH });
    } catch (error) {
      if (!isJsonataFailure(error)) {
        throw error;
      }
      throw new TransformSyntaxError(`invalid JSONata expression: ${describeFailure(error)}`);
    }
  }

  /**
   * Evaluates the expression on the envelope and returns the request body as JSON
   * text. `envelopeJson` is the untransformed body, as the envelope builder returns it.
   * Rejects with TransformError when evaluation fails, when the result is undefined
   * (for example a path that matches nothing), or when it contains a function or a
   * number that JSON cannot represent, such as the Infinity that `1/0` returns.
   */
  async renderBody(envelopeJson: string): Promise<string> {
    const envelope: unknown = JSON.parse(envelopeJson);
    let result: unknown;
    try {
      result = await this.#compiled.evaluate(envelope);
    } catch (error) {
      if (!isJsonataFailure(error)) {
        throw error;
      }
      throw new TransformError(`transform.body failed: ${describeFailure(error)}`, error.code);
    }
    if (result === undefined) {
      throw new TransformError('transform.body returned no value; the expression matched nothing in this event');
    }
    return JSON.stringify(result, rejectNonJson);
  }
}

function rejectNonJson(_key: string, value: unknown): unknown {
  if (typeof value === 'function' || (typeof value === 'object' && value !== null && '_jsonata_lambda' in value)) {
    throw new TransformError('transform.body returned a function, which has no JSON form');
  }
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new TransformError(`transform.body returned the number ${value}, which has no JSON form`);
  }
  return value;
}

/** Returns the syntax error message of an expression, or undefined when it parses. */
export function checkTransformExpression(expression: string): string | undefined {
  try {
    new BodyTransform(expression);
    return undefined;
  } catch (error) {
    if (error instanceof TransformSyntaxError) {
      return error.message;
    }
    throw error;
  }
}
