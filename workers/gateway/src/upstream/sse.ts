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
      // Walk the lines by position and cut the buffer once: cutting it per line copied the rest
      // of the read for every line.
      let start = 0;
      let newline: number;
      while ((newline = buffer.indexOf("\n", start)) >= 0) {
        const end = newline > start && buffer.charCodeAt(newline - 1) === 13 ? newline - 1 : newline; // CRLF
        if (end === start) {
          if (data.length > 0) batch.push(data.length === 1 ? data[0]! : data.join("\n"));
          data = [];
        } else if (buffer.startsWith("data:", start)) {
          data.push(buffer.slice(start + (buffer.charCodeAt(start + 5) === 32 ? 6 : 5), end));
        }
        start = newline + 1;
      }
      buffer = buffer.slice(start);
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
