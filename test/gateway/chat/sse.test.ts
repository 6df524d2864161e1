import { describe, expect, it } from "vitest";
import { readSseData } from "../../../workers/gateway/src/upstream/sse";

// A body that delivers `text` in reads cut at the given offsets.
function body(text: string, cuts: number[]): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  const bounds = [0, ...cuts, bytes.length];
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i + 1 >= bounds.length) return controller.close();
      controller.enqueue(bytes.slice(bounds[i], bounds[i + 1]));
      i++;
    },
  });
}

async function payloads(text: string, cuts: number[] = []): Promise<string[][]> {
  const out: string[][] = [];
  for await (const batch of readSseData(body(text, cuts))) out.push(batch);
  return out;
}

const STREAM = 'data: {"a":1}\n\n: keep-alive\n\ndata:{"b":2}\r\n\r\nevent: x\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n';
const EXPECTED = ['{"a":1}', '{"b":2}', "line one\nline two", "[DONE]"];

describe("readSseData", () => {
  it("yields each read's complete events: data lines joined, comments and other fields skipped, LF or CRLF", async () => {
    expect(await payloads(STREAM)).toEqual([EXPECTED]);
  });

  it("gives the same events however the bytes are cut into reads", async () => {
    for (let cut = 1; cut < STREAM.length; cut++) {
      expect((await payloads(STREAM, [cut])).flat()).toEqual(EXPECTED);
    }
    const everyByte = Array.from({ length: STREAM.length - 1 }, (_, i) => i + 1);
    expect((await payloads(STREAM, everyByte)).flat()).toEqual(EXPECTED);
  });

  it("keeps multi-byte characters cut between reads whole", async () => {
    const text = "data: héllo 世界 🙂\n\n";
    const bytes = new TextEncoder().encode(text).length;
    for (let cut = 1; cut < bytes; cut++) expect((await payloads(text, [cut])).flat()).toEqual(["héllo 世界 🙂"]);
  });

  it("yields a last event that has no blank line after it", async () => {
    expect((await payloads('data: {"end":true}\n')).flat()).toEqual(['{"end":true}']);
  });
});
