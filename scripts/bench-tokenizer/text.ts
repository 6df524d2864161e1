// Deterministic benchmark prompts: "mixed" is prose, code, JSON, CJK and numbers in the
// proportions of a long chat context; "random" is random multilingual text (few repeated pieces).

function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function benchText(chars: number, kind: string): string {
  const random = rng(20250324);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const parts: string[] = [];
  let length = 0;
  const push = (s: string) => {
    parts.push(s);
    length += s.length;
  };
  if (kind === "random") {
    const ranges: [number, number][] = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x600, 0x6ff], [0x900, 0x97f], [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff]];
    while (length < chars) {
      const [lo, hi] = pick(ranges);
      let s = "";
      for (let i = 1 + Math.floor(random() * 8); i > 0; i--) s += String.fromCodePoint(lo + Math.floor(random() * (hi - lo)));
      push(s + pick([" ", "", "\n", ", ", ". "]));
    }
    return parts.join("").slice(0, chars);
  }
  const syllables = ["ka", "ri", "to", "men", "sa", "lo", "ver", "ing", "tion", "pre", "con", "al", "the", "st", "ex", "ra", "de", "ly", "un", "mo"];
  const words = Array.from({ length: 4000 }, () => {
    let w = "";
    for (let i = 1 + Math.floor(random() * 3); i > 0; i--) w += pick(syllables);
    return w;
  });
  const zipf = () => words[Math.floor(words.length * random() ** 3)]!;
  const cjk = () => {
    let s = "";
    for (let i = 4 + Math.floor(random() * 20); i > 0; i--) s += String.fromCharCode(0x4e00 + Math.floor(random() ** 2 * 3000));
    return s + pick(["，", "。", "：", "\n"]);
  };
  const code = () => `  const ${zipf()}_${Math.floor(random() * 100)} = await ${zipf()}(${zipf()}, { limit: ${Math.floor(random() * 5000)} });\n`;
  const json = () => JSON.stringify({ id: Math.floor(random() * 1e6), name: zipf(), tags: [zipf(), zipf()], score: Math.round(random() * 1e4) / 100 }) + "\n";
  while (length < chars) {
    const r = random();
    if (r < 0.7) {
      let sentence = zipf();
      sentence = sentence[0]!.toUpperCase() + sentence.slice(1);
      for (let i = 3 + Math.floor(random() * 15); i > 0; i--) sentence += (random() < 0.1 ? ", " : " ") + zipf();
      push(sentence + pick([". ", ". ", "? ", ".\n\n"]));
    } else if (r < 0.8) push(code());
    else if (r < 0.9) push(cjk());
    else if (r < 0.95) push(json());
    else push(`${Math.floor(random() * 1e7)} ${pick(["items", "ms", "MB", "%"])}; `);
  }
  return parts.join("").slice(0, chars);
}
