// API keys: `sk-` + 32 lowercase hex from a CSPRNG. Only the SHA-256 of a key is stored,
// with a display prefix and the last four characters for people to recognise it by.
export const API_KEY_PATTERN = /^sk-[0-9a-f]{32}$/;

export interface NewApiKey {
  key: string;
  keyHash: string;
  displayPrefix: string;
  last4: string;
}

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let out = "";
  for (const b of view) out += b.toString(16).padStart(2, "0");
  return out;
}

export function randomHex(byteCount: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(byteCount)));
}

export async function sha256Hex(text: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

export async function generateApiKey(): Promise<NewApiKey> {
  const key = `sk-${randomHex(16)}`;
  return { key, keyHash: await sha256Hex(key), displayPrefix: key.slice(0, 7), last4: key.slice(-4) };
}
