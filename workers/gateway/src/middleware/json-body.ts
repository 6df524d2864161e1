// Reads a JSON request body with a hard size cap. The body is streamed and counted, so an
// oversized request is refused as soon as it crosses the cap, never buffered whole.
import { ApiError, badRequest } from "../errors/api-error";

export const MAX_BODY_BYTES = 8 * 1024 * 1024;

const tooLarge = () => new ApiError(413, `Request body too large: the limit is ${MAX_BODY_BYTES} bytes`, null, {}, "request_too_large");

export async function readBodyText(request: Request, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  if (!request.body) return "";

  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

export async function readJsonBody(request: Request): Promise<{ body: unknown; text: string }> {
  const text = await readBodyText(request);
  if (text.trim() === "") throw badRequest("Request body is empty; expected a JSON object");
  try {
    return { body: JSON.parse(text) as unknown, text };
  } catch (err) {
    throw badRequest(`Failed to parse the request body as JSON: ${(err as Error).message}`);
  }
}
