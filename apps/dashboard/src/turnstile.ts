// Cloudflare Turnstile on the sign-up form, when the gateway has a site key configured
// (production): the widget gives a token that the gateway verifies with siteverify.
import { api } from "./api";
import { h } from "./dom";

const SCRIPT = "https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit";

interface TurnstileApi {
  render(container: HTMLElement, options: Record<string, unknown>): string;
}

let loading: Promise<TurnstileApi> | null = null;
function loadTurnstile(): Promise<TurnstileApi> {
  loading ??= new Promise((resolve, reject) => {
    const script = h("script", { src: SCRIPT, async: true });
    script.addEventListener("load", () => resolve((window as unknown as { turnstile: TurnstileApi }).turnstile));
    script.addEventListener("error", () => reject(new Error("the human check could not load; reload the page")));
    document.head.append(script);
  });
  return loading;
}

export interface HumanCheck {
  element: HTMLElement;
  token(): string | undefined;
}

// The widget, or null when sign-up needs no check (local development).
export async function humanCheck(onError: (message: string) => void): Promise<HumanCheck | null> {
  const { turnstile_site_key: siteKey } = await api<{ turnstile_site_key: string | null }>("GET", "/auth/signup-config");
  if (!siteKey) return null;
  let token: string | undefined;
  const element = h("div", { class: "turnstile", "data-sitekey": siteKey });
  loadTurnstile()
    .then((turnstile) =>
      turnstile.render(element, {
        sitekey: siteKey,
        action: "signup",
        callback: (t: string) => void (token = t),
        "expired-callback": () => void (token = undefined),
        "error-callback": () => onError("the human check failed; reload the page"),
      }),
    )
    .catch((err: Error) => onError(err.message));
  return { element, token: () => token };
}
