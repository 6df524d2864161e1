// The dashboard API client: same-origin JSON with the session cookie, and the CSRF token on
// every state change. A lost session sends the person back to sign-in.
export interface Session {
  email: string;
  role: "user" | "admin";
  csrf: string;
}

export class ApiFailure extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

let session: Session | null = null;
let onSignedOut: () => void = () => undefined;

export const currentSession = () => session;
export function setSession(next: Session | null): void {
  session = next;
}
export function whenSignedOut(handler: () => void): void {
  onSignedOut = handler;
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session) headers["x-csrf-token"] = session.csrf;
  const res = await fetch(`/dashboard/api${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = data?.error ?? {};
    if (res.status === 401 && error.code === "not_signed_in") {
      session = null;
      onSignedOut();
    }
    throw new ApiFailure(error.message ?? `Request failed (${res.status})`, res.status, error.code ?? "error");
  }
  return data as T;
}

export async function loadSession(): Promise<Session | null> {
  const s = await api<{ signed_in: boolean; user?: { email: string; role: "user" | "admin" }; csrf_token?: string }>("GET", "/auth/session");
  session = s.signed_in && s.user && s.csrf_token ? { email: s.user.email, role: s.user.role, csrf: s.csrf_token } : null;
  return session;
}
