/**
 * Per-key FIFO queues with at most one unit of work in flight per key. Events of one
 * key (a row, a table, or everything, depending on the ordering mode) therefore go
 * out one after another in commit order, while different keys proceed in parallel.
 */

interface KeyState<T> {
  readonly items: T[];
  head: number;
  busy: boolean;
}

/** Emptied key states kept for reuse, so a stream of distinct keys allocates none. */
const MAX_SPARE_STATES = 1024;

export class KeyedQueue<T> {
  readonly #keys = new Map<string, KeyState<T>>();
  readonly #spare: KeyState<T>[] = [];
  /** Keys whose head item may be taken, in the order they became ready. */
  #ready: string[] = [];
  #readyHead = 0;
  #size = 0;

  /** Items queued and not yet taken. */
  get size(): number {
    return this.#size;
  }

  push(key: string, item: T): void {
    let state = this.#keys.get(key);
    if (state === undefined) {
      state = this.#spare.pop() ?? { items: [], head: 0, busy: false };
      this.#keys.set(key, state);
    }
    const wasEmpty = state.head === state.items.length;
    state.items.push(item);
    this.#size += 1;
    if (wasEmpty && !state.busy) this.#ready.push(key);
  }

  /**
   * Takes the next ready key and up to `maxItems` of its queued items, stopping before
   * the item that would make `weight` exceed `maxWeight` (the first item is always
   * taken). The key stays busy until `release(key)`. Returns undefined when no key is ready.
   */
  take(maxItems = 1, maxWeight = Infinity, weight?: (item: T) => number): { key: string; items: T[] } | undefined {
    const items: T[] = [];
    const key = this.takeInto(items, maxItems, maxWeight, weight);
    return key === undefined ? undefined : { key, items };
  }

  /** Does what `take` does, but appends the items to `into` and returns only the key. */
  takeInto(into: T[], maxItems = 1, maxWeight = Infinity, weight?: (item: T) => number): string | undefined {
    while (this.#readyHead < this.#ready.length) {
      const key = this.#ready[this.#readyHead]!;
      this.#readyHead += 1;
      this.#compactReady();
      const state = this.#keys.get(key);
      if (state === undefined || state.busy || state.head === state.items.length) continue;

      const start = into.length;
      let total = 0;
      while (state.head < state.items.length && into.length - start < maxItems) {
        const item = state.items[state.head]!;
        const itemWeight = weight === undefined ? 0 : weight(item);
        if (into.length > start && total + itemWeight > maxWeight) break;
        into.push(item);
        total += itemWeight;
        state.items[state.head] = undefined as T;
        state.head += 1;
      }
      this.#size -= into.length - start;
      state.busy = true;
      return key;
    }
    return undefined;
  }

  /**
   * Puts items back at the front of their key, in order, for work that must be redone
   * (a batch split after 413). The key must be busy; it stays busy.
   */
  unshift(key: string, items: readonly T[]): void {
    const state = this.#keys.get(key);
    if (state === undefined || !state.busy) throw new Error(`keyed queue: unshift on idle key ${key}`);
    const rest = state.items.slice(state.head);
    state.items.length = 0;
    state.items.push(...items, ...rest);
    state.head = 0;
    this.#size += items.length;
  }

  /** Marks the key's work as finished, so its next item may be taken. */
  release(key: string): void {
    const state = this.#keys.get(key);
    if (state === undefined || !state.busy) throw new Error(`keyed queue: release of idle key ${key}`);
    state.busy = false;
    if (state.head === state.items.length) {
      this.#keys.delete(key);
      if (this.#spare.length < MAX_SPARE_STATES) {
        state.items.length = 0;
        state.head = 0;
        this.#spare.push(state);
      }
      return;
    }
    if (state.head > 64 && state.head * 2 > state.items.length) {
      state.items.splice(0, state.head);
      state.head = 0;
    }
    this.#ready.push(key);
  }

  #compactReady(): void {
    if (this.#readyHead === this.#ready.length) {
      this.#ready = [];
      this.#readyHead = 0;
    } else if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
      this.#ready = this.#ready.slice(this.#readyHead);
      this.#readyHead = 0;
    }
  }
}
