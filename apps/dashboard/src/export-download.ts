// Downloads a usage export whole. The gateway answers a large export in parts (each within one
// invocation's query budget) linked by `Link: <...>; rel="next"`; this follows the links, joins
// the parts (CSV parts repeat the header row: kept once) and saves the result as one file.
export async function downloadExport(url: string, onProgress: (parts: number) => void): Promise<void> {
  const texts: string[] = [];
  let filename = "usage-export";
  let type = "text/plain";
  let next: string | null = url;
  while (next) {
    const res: Response = await fetch(next, { credentials: "same-origin" });
    if (!res.ok) throw new Error(`Export failed (${res.status}): ${(await res.json().catch(() => null))?.error?.message ?? res.statusText}`);
    let text = await res.text();
    if (texts.length === 0) {
      filename = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") ?? "")?.[1] ?? filename;
      type = res.headers.get("content-type") ?? type;
    } else if (type.startsWith("text/csv")) {
      text = text.slice(text.indexOf("\r\n") + 2);
    }
    texts.push(text);
    onProgress(texts.length);
    next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get("link") ?? "")?.[1] ?? null;
  }
  const href = URL.createObjectURL(new Blob(texts, { type }));
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}
