// DeepSeek-V3's pre-tokenizer as a hand-written scanner (no regex engine, Oniguruma's Unicode
// classes from the vocabulary artifact). tokenizer.json applies three Split(Isolated) steps, each
// to every piece the step before made:
//   1. \p{N}{1,3}
//   2. [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+
//   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
//      | ?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// Text between matches is a piece too. scripts/gen-tokenizer-data.py refuses a tokenizer.json
// whose pre-tokenizer differs from this.
import { CLASS_L, CLASS_M, CLASS_N, CLASS_P, CLASS_S, CLASS_WS } from "./vocabulary";

const LM = CLASS_L | CLASS_M;
const PS = CLASS_P | CLASS_S;
const CR = 0x0d;
const LF = 0x0a;

/** Receives each piece as a [start, end) range of UTF-16 code units. */
export type PieceSink = (start: number, end: number) => void;

export class PreTokenizer {
  constructor(private readonly classes: Uint8Array) {}

  /** Splits text[start, end) into pieces, in order. */
  split(text: string, start: number, end: number, emit: PieceSink): void {
    // Step 1: runs of up to three numeric code points are pieces; the rest goes to step 2.
    const classes = this.classes;
    let gapStart = start;
    let i = start;
    while (i < end) {
      const cp = codePointAt(text, i);
      if ((classes[cp]! & CLASS_N) === 0) {
        i += cp > 0xffff ? 2 : 1;
        continue;
      }
      if (gapStart < i) this.splitCjk(text, gapStart, i, emit);
      let j = i;
      for (let count = 0; count < 3 && j < end; count++) {
        const d = codePointAt(text, j);
        if ((classes[d]! & CLASS_N) === 0) break;
        j += d > 0xffff ? 2 : 1;
      }
      emit(i, j);
      i = gapStart = j;
    }
    if (gapStart < end) this.splitCjk(text, gapStart, end, emit);
  }

  // Step 2: CJK runs (all in the BMP) are pieces; every piece then goes through step 3.
  private splitCjk(text: string, start: number, end: number, emit: PieceSink): void {
    let gapStart = start;
    let i = start;
    while (i < end) {
      if (!isCjk(text.charCodeAt(i))) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < end && isCjk(text.charCodeAt(j))) j++;
      if (gapStart < i) this.splitWords(text, gapStart, i, emit);
      this.splitWords(text, i, j, emit);
      i = gapStart = j;
    }
    if (gapStart < end) this.splitWords(text, gapStart, end, emit);
  }

  // Step 3: the word regex, leftmost-first like Oniguruma, within [start, end) only.
  private splitWords(text: string, start: number, end: number, emit: PieceSink): void {
    let gapStart = -1;
    let i = start;
    while (i < end) {
      const matchEnd = this.matchWord(text, i, end);
      if (matchEnd < 0) {
        if (gapStart < 0) gapStart = i;
        i += isHighSurrogateAt(text, i, end) ? 2 : 1;
        continue;
      }
      if (gapStart >= 0) {
        emit(gapStart, i);
        gapStart = -1;
      }
      emit(i, matchEnd);
      i = matchEnd;
    }
    if (gapStart >= 0) emit(gapStart, end);
  }

  /** End of the word-regex match starting at i, or -1. */
  private matchWord(text: string, i: number, end: number): number {
    const classes = this.classes;
    const c = codePointAt(text, i);
    const next = i + (c > 0xffff ? 2 : 1);
    const c1 = next < end ? codePointAt(text, next) : -1;
    const cls = classes[c]!;
    const cls1 = c1 < 0 ? 0 : classes[c1]!;

    // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
    if (c < 0x80 && isAsciiPunct(c) && c1 >= 0 && isAsciiLetter(c1)) {
      let j = next + 1;
      while (j < end && isAsciiLetter(text.charCodeAt(j))) j++;
      return j;
    }
    // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
    if ((cls1 & LM) !== 0 && c !== CR && c !== LF && (cls & (CLASS_L | PS)) === 0) return this.run(text, next, end, LM);
    if ((cls & LM) !== 0) return this.run(text, i, end, LM);
    // ' ?[\p{P}\p{S}]+[\r\n]*'
    if (c === 0x20 && (cls1 & PS) !== 0) return crlfRun(text, this.run(text, next, end, PS), end);
    if ((cls & PS) !== 0) return crlfRun(text, this.run(text, i, end, PS), end);
    if ((cls & CLASS_WS) === 0) return -1;
    // Whitespace (all of it is in the BMP): \s*[\r\n]+ ends after the run's last CR/LF;
    // \s+(?!\S) leaves the run's last space to the next piece unless the run ends the text;
    // \s+ takes a single space.
    let j = i + 1;
    let lastNewline = c === CR || c === LF ? i : -1;
    while (j < end) {
      const w = text.charCodeAt(j);
      if ((classes[w]! & CLASS_WS) === 0 || (w >= 0xd800 && w <= 0xdfff)) break;
      if (w === CR || w === LF) lastNewline = j;
      j++;
    }
    if (lastNewline >= 0) return lastNewline + 1;
    if (j === end || j - i === 1) return j;
    return j - 1;
  }

  /** End of the run of code points with any of the class bits, from i. */
  private run(text: string, i: number, end: number, bits: number): number {
    const classes = this.classes;
    while (i < end) {
      const cp = codePointAt(text, i);
      if ((classes[cp]! & bits) === 0) break;
      i += cp > 0xffff ? 2 : 1;
    }
    return i;
  }
}

function crlfRun(text: string, i: number, end: number): number {
  while (i < end) {
    const c = text.charCodeAt(i);
    if (c !== CR && c !== LF) break;
    i++;
  }
  return i;
}

/** The code point at i; a lone surrogate counts as U+FFFD, as in the UTF-8 the worker sees. */
export function codePointAt(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c < 0xd800 || c > 0xdfff) return c;
  if (c <= 0xdbff && i + 1 < text.length) {
    const d = text.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
  }
  return 0xfffd;
}

function isHighSurrogateAt(text: string, i: number, end: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 0xd800 || c > 0xdbff || i + 1 >= end) return false;
  const d = text.charCodeAt(i + 1);
  return d >= 0xdc00 && d <= 0xdfff;
}

function isCjk(c: number): boolean {
  return (c >= 0x4e00 && c <= 0x9fa5) || (c >= 0x3040 && c <= 0x30ff);
}

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function isAsciiPunct(c: number): boolean {
  return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}
