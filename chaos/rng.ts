/**
 * Seeded pseudo-random numbers, so that `npm run chaos -- --seed N` replays the same
 * fault times, load and receiver responses. The generator is xoshiro128** (Blackman and
 * Vigna, "Scrambled linear pseudorandom number generators", 2018), seeded through
 * SplitMix32 steps. It is fast and good enough for fault injection, not for secrets.
 */

const UINT32_RANGE = 2 ** 32;

/** Returns the next SplitMix32 output for `state` and the advanced state. */
function splitMix32(state: number): [value: number, next: number] {
  const next = (state + 0x9e3779b9) >>> 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [(z ^ (z >>> 16)) >>> 0, next];
}

/** Hashes `text` to 32 bits (FNV-1a), to derive a child seed from a label. */
function hashText(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  }
  return hash;
}

export class Rng {
  readonly seed: number;
  readonly #state = new Uint32Array(4);

  /** `seed` is an unsigned 32-bit integer. */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed >= UINT32_RANGE) {
      throw new Error(`invalid seed ${seed}: expected an integer from 0 to ${UINT32_RANGE - 1}`);
    }
    this.seed = seed;
    let splitState = seed;
    for (let i = 0; i < 4; i += 1) {
      const [value, next] = splitMix32(splitState);
      this.#state[i] = value;
      splitState = next;
    }
  }

  /**
   * Returns an independent generator for `label`. Each scenario forks its own, so that
   * running a subset of the scenarios does not change what each one does.
   */
  fork(label: string): Rng {
    return new Rng((this.seed ^ hashText(label)) >>> 0);
  }

  /** Returns the next unsigned 32-bit value. */
  nextUint32(): number {
    const s = this.#state;
    let [s0, s1, s2, s3] = [s[0]!, s[1]!, s[2]!, s[3]!];
    const result = Math.imul(rotateLeft(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotateLeft(s3 >>> 0, 11);
    s.set([s0, s1, s2, s3]);
    return result;
  }

  /** Returns a number in [0, 1). */
  next(): number {
    return this.nextUint32() / UINT32_RANGE;
  }

  /** Returns an integer from `min` to `max`, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** Returns true with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('cannot pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** Picks a key of `weights` with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
    let point = this.next() * total;
    for (const [key, weight] of entries) {
      point -= weight;
      if (point < 0) return key;
    }
    return entries[entries.length - 1]![0];
  }
}

function rotateLeft(value: number, bits: number): number {
  return ((value << bits) | (value >>> (32 - bits))) >>> 0;
}
