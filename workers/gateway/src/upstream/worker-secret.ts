// GPU worker secrets at rest: AES-GCM under WORKER_SECRET_KEY (a wrangler secret; base64 of
// 32 bytes), so a D1 dump or export does not hand out the keys to the fleet. Stored as
// `enc:v1:<iv>:<ciphertext>`; a row without that prefix is a plaintext secret from before
// encryption, still read as is until `npm run admin -- encrypt-worker-secrets` rewrites it.

const PREFIX = "enc:v1:";

export const isSealed = (stored: string) => stored.startsWith(PREFIX);

const toBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));

const keys = new Map<string, Promise<CryptoKey>>();

function importKey(keyBase64: string | undefined): Promise<CryptoKey> {
  if (!keyBase64) throw new Error("WORKER_SECRET_KEY is not set: it encrypts GPU worker secrets (wrangler secret put WORKER_SECRET_KEY)");
  let key = keys.get(keyBase64);
  if (!key) {
    const raw = fromBase64(keyBase64);
    if (raw.length !== 32) throw new Error("WORKER_SECRET_KEY must be the base64 of 32 random bytes (openssl rand -base64 32)");
    key = crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
    keys.set(keyBase64, key);
  }
  return key;
}

export async function sealWorkerSecret(secret: string, keyBase64: string | undefined): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await importKey(keyBase64), new TextEncoder().encode(secret));
  return `${PREFIX}${toBase64(iv)}:${toBase64(new Uint8Array(sealed))}`;
}

export async function openWorkerSecret(stored: string, keyBase64: string | undefined): Promise<string> {
  if (!isSealed(stored)) return stored;
  const [iv, data] = stored.slice(PREFIX.length).split(":");
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64(iv ?? "") }, await importKey(keyBase64), fromBase64(data ?? ""));
  return new TextDecoder().decode(plain);
}
