// Server-sent events: parse an upstream byte stream into `data:` payloads as they arrive,
// and encode events for clients. Comments (`: keep-alive`) and other fields are skipped.
// Payloads come in the batches one read completed (never empty), so that a caller can answer a
// burst of events with one write instead of one per event.
export async function* readSseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string[]> {
  // Read bytes and decode here rather than piping through a TextDecoderStream: a pipe whose
  // source dies (a worker crash) would reject a promise nobody awaits.
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const batch: string[] = [];
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (data.length > 0) batch.push(data.join("\n"));
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
      }
      if (batch.length > 0) yield batch;
    }
    if (data.length > 0) yield [data.join("\n")];
  } finally {
    reader.releaseLock();
  }
}

const encoder = new TextEncoder();
export const sseData = (payload: unknown) => encoder.encode(`data: ${typeof payload === "string" ? payload : JSON.stringify(payload)}\n\n`);
export const sseComment = (text: string) => encoder.encode(`: ${text}\n\n`);
