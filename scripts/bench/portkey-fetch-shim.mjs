// Preloaded into Portkey's process (node --import). Portkey's Node server (@hono/node-server)
// builds its streamed response on the upstream Response's own Headers and then appends to them;
// a Response from Node's fetch has immutable headers, so every streamed request would fail with
// "TypeError: immutable". Re-wrapping upstream responses with mutable headers (no copy of the
// body) lets Portkey stream; it costs Portkey one small object per request.
const NodeResponse = globalThis.Response;
const nodeFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const res = await nodeFetch(...args);
  return new NodeResponse(res.body, { status: res.status, statusText: res.statusText, headers: new Headers(res.headers) });
};
