// History-API routing under /dashboard/. Links marked data-link navigate without a reload.
export type Page = (main: HTMLElement, params: URLSearchParams) => Promise<void> | void;

const BASE = "/dashboard";
const routes = new Map<string, Page>();
let render: (path: string, page: Page | undefined) => void = () => undefined;

export function route(path: string, page: Page): void {
  routes.set(path, page);
}

export function onRoute(handler: (path: string, page: Page | undefined) => void): void {
  render = handler;
}

export function currentPath(): string {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  return path.replace(/\/+$/, "") || "/";
}

export function navigate(path: string, replace = false): void {
  const url = `${BASE}${path === "/" ? "/" : path}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  dispatch();
}

export function dispatch(): void {
  const path = currentPath();
  render(path, routes.get(path));
}

export function href(path: string): string {
  return `${BASE}${path}`;
}

export function startRouter(): void {
  window.addEventListener("popstate", dispatch);
  document.addEventListener("click", (event) => {
    const link = (event.target as Element | null)?.closest?.("a[data-link]") as HTMLAnchorElement | null;
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(new URL(link.href).pathname.slice(BASE.length) || "/");
  });
  dispatch();
}
