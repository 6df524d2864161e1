// The compiled DeepSeek-V3 vocabulary (data/deepseek-v3.bin, made by scripts/gen-tokenizer-data.py):
// merge table, byte-level ids, added tokens and the Unicode classes of the pre-tokenizer.

export const CLASS_L = 1;
export const CLASS_M = 2;
export const CLASS_N = 4;
export const CLASS_P = 8;
export const CLASS_S = 16;
export const CLASS_WS = 32;

interface Header {
  source_sha256: string;
  vocab_size: number;
  merge_count: number;
  first_merge_id: number;
  byte_ids: number[];
  added_tokens: [string, number][];
  class_bits: Record<string, number>;
  class_runs: [number, number, number][];
}

const EXPECTED_CLASS_BITS = { L: CLASS_L, M: CLASS_M, N: CLASS_N, P: CLASS_P, S: CLASS_S, WS: CLASS_WS };

export class Vocabulary {
  readonly sourceSha256: string;
  readonly vocabSize: number;
  /** Token id of each byte (byte-level alphabet). */
  readonly byteIds: Int32Array;
  /** Added tokens (special and control strings), matched in raw text before anything else. */
  readonly addedTokens: Map<string, number>;
  readonly addedTokenLengths: number[];
  /** Class bits of every code point, as Oniguruma sees them. */
  readonly classes: Uint8Array;
  // Open-addressing hash of (left, right) -> merged id; the merged id is also the priority.
  private readonly slotLeft: Int32Array;
  private readonly slotRight: Int32Array;
  private readonly slotMerged: Int32Array;
  private readonly mask: number;

  constructor(data: ArrayBuffer) {
    const bytes = new Uint8Array(data);
    if (new TextDecoder().decode(bytes.subarray(0, 8)) !== "DSV3TOK1") throw new Error("not a DeepSeek-V3 tokenizer artifact");
    const headerLength = new DataView(data).getUint32(8, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerLength))) as Header;
    if (JSON.stringify(header.class_bits) !== JSON.stringify(EXPECTED_CLASS_BITS)) throw new Error("unexpected class bits");
    this.sourceSha256 = header.source_sha256;
    this.vocabSize = header.vocab_size;
    this.byteIds = Int32Array.from(header.byte_ids);
    this.addedTokens = new Map(header.added_tokens);
    this.addedTokenLengths = [...new Set(header.added_tokens.map(([t]) => t.length))].sort((a, b) => b - a);

    this.classes = new Uint8Array(0x110000);
    for (const [start, end, bits] of header.class_runs) this.classes.fill(bits, start, end);

    const n = header.merge_count;
    let offset = 12 + headerLength;
    offset += -offset & 3;
    const leftLow = new Uint16Array(data, offset, n);
    const rightLow = new Uint16Array(data, offset + 2 * n, n);
    const highBits = (n + 7) >> 3;
    const leftHigh = new Uint8Array(data, offset + 4 * n, highBits);
    const rightHigh = new Uint8Array(data, offset + 4 * n + highBits, highBits);

    let size = 1;
    while (size < n * 2) size <<= 1;
    this.mask = size - 1;
    this.slotLeft = new Int32Array(size).fill(-1);
    this.slotRight = new Int32Array(size);
    this.slotMerged = new Int32Array(size);
    for (let i = 0; i < n; i++) {
      const left = leftLow[i]! | (((leftHigh[i >> 3]! >> (i & 7)) & 1) << 16);
      const right = rightLow[i]! | (((rightHigh[i >> 3]! >> (i & 7)) & 1) << 16);
      let slot = hash(left, right) & this.mask;
      while (this.slotLeft[slot]! !== -1) slot = (slot + 1) & this.mask;
      this.slotLeft[slot] = left;
      this.slotRight[slot] = right;
      this.slotMerged[slot] = header.first_merge_id + i;
    }
  }

  /** The token that merging left and right makes (lower id = earlier merge), or -1. */
  merge(left: number, right: number): number {
    let slot = hash(left, right) & this.mask;
    for (;;) {
      const l = this.slotLeft[slot]!;
      if (l === -1) return -1;
      if (l === left && this.slotRight[slot]! === right) return this.slotMerged[slot]!;
      slot = (slot + 1) & this.mask;
    }
  }
}

function hash(left: number, right: number): number {
  return (Math.imul(left, 0x9e3779b1) ^ Math.imul(right + 0x7f4a7c15, 0x85ebca77)) >>> 7;
}
