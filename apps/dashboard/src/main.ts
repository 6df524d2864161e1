// Dashboard entry: the header navigation, the page routes, and the signed-in/out switch.
import { currentSession, loadSession, whenSignedOut } from "./api";
import { h, replace } from "./dom";
import { messageOf } from "./notice";
import { accountPage } from "./pages/account";
import { adminAuditPage } from "./pages/admin-audit";
import { adminAccountsPage } from "./pages/admin-accounts";
import { adminModelsPage } from "./pages/admin-models";
import { adminWorkersPage } from "./pages/admin-workers";
import { signInPage, signUpPage } from "./pages/auth";
import { billingPage } from "./pages/billing";
import { keysPage } from "./pages/keys";
import { resetPasswordPage } from "./pages/reset-password";
import { usagePage } from "./pages/usage";
import { currentPath, href, navigate, onRoute, type Page, route, startRouter } from "./router";
import "./styles.css";

const PUBLIC = new Set(["/signin", "/signup", "/reset-password"]);

const NAV: { path: string; label: string; admin?: boolean }[] = [
  { path: "/usage", label: "Usage" },
  { path: "/keys", label: "API keys" },
  { path: "/billing", label: "Billing" },
  { path: "/account", label: "Account" },
  { path: "/admin/accounts", label: "Accounts", admin: true },
  { path: "/admin/workers", label: "GPU workers", admin: true },
  { path: "/admin/models", label: "Prices", admin: true },
  { path: "/admin/audit", label: "Audit log", admin: true },
];

route("/signin", signInPage);
route("/signup", signUpPage);
route("/reset-password", resetPasswordPage);
route("/usage", usagePage);
route("/keys", keysPage);
route("/billing", billingPage);
route("/account", accountPage);
route("/admin/accounts", adminAccountsPage);
route("/admin/workers", adminWorkersPage);
route("/admin/models", adminModelsPage);
route("/admin/audit", adminAuditPage);

function header(path: string): void {
  const top = document.getElementById("top")!;
  const session = currentSession();
  const links = session
    ? NAV.filter((n) => !n.admin || session.role === "admin").map((n) =>
        h("a", { href: href(n.path), "data-link": true, "aria-current": n.path === path ? "page" : undefined, class: n.admin ? "admin" : undefined }, n.label),
      )
    : [h("a", { href: href("/signin"), "data-link": true }, "Sign in"), h("a", { href: href("/signup"), "data-link": true }, "Sign up")];
  replace(
    top,
    h("a", { class: "brand", href: href(session ? "/usage" : "/signin"), "data-link": true }, "LLM Platform"),
    h("nav", { "aria-label": "Main" }, links),
    session ? h("span", { class: "who", title: session.email }, session.email) : null,
  );
}

async function show(path: string, page: Page | undefined): Promise<void> {
  const main = document.getElementById("main")!;
  const session = currentSession();
  if (!session && !PUBLIC.has(path)) return navigate("/signin", true);
  if (session && (PUBLIC.has(path) || path === "/" || !page)) return navigate("/usage", true);
  header(path);
  replace(main, h("p", { class: "loading" }, "Loading…"));
  try {
    replace(main);
    await page!(main, new URLSearchParams(location.search));
  } catch (err) {
    replace(main, h("p", { class: "error", role: "alert" }, messageOf(err)));
  }
  const title = NAV.find((n) => n.path === path)?.label ?? ({ "/signup": "Sign up", "/reset-password": "New password" }[path] ?? "Sign in");
  document.title = `${title} · LLM Platform`;
}

whenSignedOut(() => {
  if (!PUBLIC.has(currentPath())) navigate("/signin", true);
});

loadSession()
  .catch(() => null)
  .then(() => {
    onRoute((path, page) => void show(path, page));
    startRouter();
  });
