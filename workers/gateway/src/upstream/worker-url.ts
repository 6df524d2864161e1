// Which GPU worker URLs may be registered. A deployed gateway reaches its workers over the
// internet: Cloudflare Workers cannot fetch IP literals (error 1003), and plain http would carry
// prompts and the worker secret unencrypted. So outside local development a worker is an
// https:// URL with a hostname (for example a Cloudflare Tunnel hostname in front of it).

export class WorkerUrlError extends Error {}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function isIpLiteral(hostname: string): boolean {
  // URL() normalizes other IPv4 spellings (0x7f000001, 127.1) to dotted form; IPv6 keeps its brackets.
  return IPV4.test(hostname) || hostname.startsWith("[");
}

// The URL as stored (no trailing slash), or a WorkerUrlError that says what to use instead.
export function checkWorkerUrl(text: string, options: { development: boolean }): string {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new WorkerUrlError(`worker URL ${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new WorkerUrlError("worker URL must start with https://");
  if (url.username || url.password || url.search || url.hash) {
    throw new WorkerUrlError("worker URL must not carry credentials, a query or a fragment (the secret is given separately)");
  }
  if (!options.development) {
    if (url.protocol !== "https:") {
      throw new WorkerUrlError(
        "worker URL must be https:// outside local development: plain http would send prompts and the worker secret unencrypted (put the worker behind Cloudflare Tunnel or another TLS endpoint)",
      );
    }
    if (isIpLiteral(url.hostname) || url.hostname === "localhost") {
      throw new WorkerUrlError(
        `worker URL needs a hostname, not ${url.hostname}, outside local development: deployed Workers cannot fetch IP addresses (Cloudflare error 1003); use a DNS name such as a Cloudflare Tunnel hostname`,
      );
    }
  }
  return url.toString().replace(/\/+$/, "");
}
