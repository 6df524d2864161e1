// DeepSeek-V3's tokenizer (byte-level BPE), giving the same ids as the `tokenizers` package does
// for tokenizer.json: added tokens first, then the pre-tokenizer, then BPE merges per piece.
import vocabularyData from "./data/deepseek-v3.bin";
import { codePointAt, PreTokenizer } from "./pre-tokenize";
import { Vocabulary } from "./vocabulary";

// Pieces longer than this (in bytes) merge through a heap instead of rescanning all pairs.
const HEAP_THRESHOLD = 48;
// Pieces repeat a lot in real text; their ids are cached per tokenizer, up to this many.
const CACHE_LIMIT = 100_000;
const CACHEABLE_LENGTH = 64;

// Thrown out of the pre-tokenizer's walk once a bounded count has passed its limit.
const LIMIT_PASSED = Symbol("token limit passed");

export class DeepSeekTokenizer {
  readonly vocabulary: Vocabulary;
  private readonly preTokenizer: PreTokenizer;
  private readonly cache = new Map<string, number | number[]>();
  private symbols = new Int32Array(256);
  private pairs = new Int32Array(256);
  private out: number[] = [];
  private text = "";
  private limit = Infinity;
  private readonly emitPiece = (start: number, end: number) => {
    this.encodePiece(start, end);
    if (this.out.length > this.limit) throw LIMIT_PASSED;
  };

  constructor(data: ArrayBuffer) {
    this.vocabulary = new Vocabulary(data);
    this.preTokenizer = new PreTokenizer(this.vocabulary.classes);
  }

  /** Token ids of text, as `tokenizers` encodes it (added tokens in the text included; no BOS added). */
  encode(text: string): number[] {
    const out: number[] = [];
    this.out = out;
    this.text = text;
    const added = this.vocabulary.addedTokens;
    const lengths = this.vocabulary.addedTokenLengths;
    let segmentStart = 0;
    // Every added token of DeepSeek-V3 starts with "<" and none is a prefix of another.
    for (let i = text.indexOf("<"); i >= 0; i = text.indexOf("<", i + 1)) {
      for (const length of lengths) {
        const id = added.get(text.substr(i, length));
        if (id === undefined) continue;
        if (segmentStart < i) this.preTokenizer.split(text, segmentStart, i, this.emitPiece);
        out.push(id);
        if (out.length > this.limit) throw LIMIT_PASSED;
        segmentStart = i + length;
        i = segmentStart - 1;
        break;
      }
    }
    if (segmentStart < text.length) this.preTokenizer.split(text, segmentStart, text.length, this.emitPiece);
    this.text = "";
    return out;
  }

  countTokens(text: string): number {
    return this.encode(text).length;
  }

  /**
   * Counts tokens only until there are more than `limit`: a prompt that is certainly too long
   * is not tokenized in full. `complete` is false when counting stopped; `count` (> limit) is
   * then a lower bound.
   */
  countTokensUpTo(text: string, limit: number): { count: number; complete: boolean } {
    this.limit = limit;
    try {
      return { count: this.encode(text).length, complete: true };
    } catch (err) {
      if (err !== LIMIT_PASSED) throw err;
      return { count: this.out.length, complete: false };
    } finally {
      this.limit = Infinity;
      this.text = "";
    }
  }

  private encodePiece(start: number, end: number): void {
    const text = this.text;
    const out = this.out;
    if (end - start === 1) {
      const c = text.charCodeAt(start);
      if (c < 0x80) {
        out.push(this.vocabulary.byteIds[c]!);
        return;
      }
    }
    const cacheable = end - start <= CACHEABLE_LENGTH;
    const key = cacheable ? text.slice(start, end) : "";
    if (cacheable) {
      const cached = this.cache.get(key);
      if (cached !== undefined) {
        if (typeof cached === "number") out.push(cached);
        else for (let k = 0; k < cached.length; k++) out.push(cached[k]!);
        return;
      }
    }
    const length = this.loadBytes(text, start, end);
    const count = length > HEAP_THRESHOLD ? this.mergeWithHeap(length) : this.mergeByScan(length);
    const symbols = this.symbols;
    for (let k = 0; k < count; k++) out.push(symbols[k]!);
    if (cacheable) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(key, count === 1 ? symbols[0]! : Array.from(symbols.subarray(0, count)));
    }
  }

  /** Writes the byte-level ids of text[start, end) as UTF-8 into symbols; returns their number. */
  private loadBytes(text: string, start: number, end: number): number {
    if (this.symbols.length < (end - start) * 3) {
      this.symbols = new Int32Array((end - start) * 3);
      this.pairs = new Int32Array((end - start) * 3);
    }
    const symbols = this.symbols;
    const byteIds = this.vocabulary.byteIds;
    let n = 0;
    for (let i = start; i < end; i++) {
      let cp = text.charCodeAt(i);
      if (cp >= 0xd800 && cp <= 0xdfff) {
        cp = codePointAt(text, i);
        if (cp > 0xffff) i++;
      }
      if (cp < 0x80) {
        symbols[n++] = byteIds[cp]!;
      } else if (cp < 0x800) {
        symbols[n++] = byteIds[0xc0 | (cp >> 6)]!;
        symbols[n++] = byteIds[0x80 | (cp & 0x3f)]!;
      } else if (cp < 0x10000) {
        symbols[n++] = byteIds[0xe0 | (cp >> 12)]!;
        symbols[n++] = byteIds[0x80 | ((cp >> 6) & 0x3f)]!;
        symbols[n++] = byteIds[0x80 | (cp & 0x3f)]!;
      } else {
        symbols[n++] = byteIds[0xf0 | (cp >> 18)]!;
        symbols[n++] = byteIds[0x80 | ((cp >> 12) & 0x3f)]!;
        symbols[n++] = byteIds[0x80 | ((cp >> 6) & 0x3f)]!;
        symbols[n++] = byteIds[0x80 | (cp & 0x3f)]!;
      }
    }
    return n;
  }

  // Repeatedly merges the leftmost pair with the earliest merge (merged ids grow with merge rank).
  private mergeByScan(n: number): number {
    const symbols = this.symbols;
    const pairs = this.pairs;
    const vocabulary = this.vocabulary;
    for (let k = 0; k + 1 < n; k++) pairs[k] = vocabulary.merge(symbols[k]!, symbols[k + 1]!);
    while (n > 1) {
      let best = -1;
      let bestId = 0x7fffffff;
      for (let k = 0; k + 1 < n; k++) {
        const id = pairs[k]!;
        if (id >= 0 && id < bestId) {
          bestId = id;
          best = k;
        }
      }
      if (best < 0) break;
      symbols[best] = bestId;
      for (let k = best + 1; k + 1 < n; k++) {
        symbols[k] = symbols[k + 1]!;
        pairs[k] = pairs[k + 1]!;
      }
      n--;
      if (best > 0) pairs[best - 1] = vocabulary.merge(symbols[best - 1]!, symbols[best]!);
      if (best + 1 < n) pairs[best] = vocabulary.merge(symbols[best]!, symbols[best + 1]!);
    }
    return n;
  }

  // The same merge order for long pieces: a heap of (merged id, position) over a linked list.
  private mergeWithHeap(n: number): number {
    const symbols = this.symbols;
    const vocabulary = this.vocabulary;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      next[k] = k + 1 < n ? k + 1 : -1;
      prev[k] = k - 1;
    }
    const heap = new MinHeap(n);
    for (let k = 0; k + 1 < n; k++) {
      const id = vocabulary.merge(symbols[k]!, symbols[k + 1]!);
      if (id >= 0) heap.push(id * 0x100000000 + k);
    }
    let live = n;
    while (heap.size > 0) {
      const top = heap.pop();
      const id = Math.floor(top / 0x100000000);
      const pos = top - id * 0x100000000;
      const right = next[pos]!;
      // Skip entries whose symbols were merged away since they were pushed.
      if (symbols[pos]! < 0 || right < 0 || vocabulary.merge(symbols[pos]!, symbols[right]!) !== id) continue;
      symbols[pos] = id;
      symbols[right] = -1;
      const after = next[right]!;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      live--;
      const before = prev[pos]!;
      if (before >= 0) {
        const m = vocabulary.merge(symbols[before]!, id);
        if (m >= 0) heap.push(m * 0x100000000 + before);
      }
      if (after >= 0) {
        const m = vocabulary.merge(id, symbols[after]!);
        if (m >= 0) heap.push(m * 0x100000000 + pos);
      }
    }
    let w = 0;
    for (let k = 0; k >= 0; k = next[k]!) symbols[w++] = symbols[k]!;
    if (w !== live) throw new Error("BPE merge bookkeeping broke");
    return w;
  }
}

class MinHeap {
  private readonly items: Float64Array;
  size = 0;

  constructor(capacity: number) {
    this.items = new Float64Array(Math.max(4, capacity * 3)); // n - 1 pairs, then at most 2 per merge
  }

  push(value: number): void {
    const items = this.items;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= value) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = value;
  }

  pop(): number {
    const items = this.items;
    const top = items[0]!;
    const last = items[--this.size]!;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= this.size) break;
      if (child + 1 < this.size && items[child + 1]! < items[child]!) child++;
      if (items[child]! >= last) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }
}

let loaded: DeepSeekTokenizer | undefined;

/** The tokenizer of this isolate, built on first use (a few milliseconds) and kept. */
export function loadTokenizer(): DeepSeekTokenizer {
  loaded ??= new DeepSeekTokenizer(vocabularyData);
  return loaded;
}
