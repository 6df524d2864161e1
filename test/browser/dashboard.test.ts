// The dashboard as a new user meets it, in headless Chromium against a real local gateway and a
// deterministic fake GPU worker: sign up, create a key, call the API with it, see usage and the
// balance change, export CSV and check it against the usage records, revoke the key and see the
// API refuse it. Also: another account sees nothing of this one, CSRF and a script in a key
// name are harmless, and the pages work at 1280 px and 390 px and from the keyboard.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeUpstream, startFakeUpstream } from "../support/fake-upstream";
import { CHROMIUM_PATH, launchBrowser } from "./chromium";
import { freePort, type Gateway, startGateway } from "./gateway-process";
import { parseCsv } from "../support/csv";

const HOSTILE_NAME = `<img src=x onerror=__pwned=1><script>__pwned=2</script>`; // within the 64-character limit
const EMAIL = `new-user-${Date.now()}@example.com`;
const PASSWORD = "a long enough password";

let gateway: Gateway;
let upstream: FakeUpstream;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;
let page: Page;
let apiKey = "";
let keyId = "";


const chat = (key: string, content: string) =>
  fetch(`${gateway.url}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "deepseek-chat", messages: [{ role: "user", content }], max_tokens: 32 }),
  });

// Lists the elements sticking out past the right edge of the viewport (tables scroll inside
// their own region and do not count).
async function overflowing(p: Page): Promise<string[]> {
  return p.evaluate(() => {
    if (document.documentElement.scrollWidth <= window.innerWidth + 1) return [];
    return [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && !el.closest(".table-wrap"))
      .map((el) => `${el.tagName.toLowerCase()}.${el.className} (${Math.round(el.getBoundingClientRect().right)}px)`);
  });
}

// Clicks a form's submit button twice in one task, as a double click does before any answer;
// whether the button was disabled in between.
async function doubleSubmit(p: Page, label: string): Promise<boolean> {
  return p.evaluate((text) => {
    const button = [...document.querySelectorAll<HTMLButtonElement>("button[type=submit]")].find((b) => b.textContent === text)!;
    button.click();
    const disabled = button.disabled;
    button.click();
    return disabled;
  }, label);
}

describe.skipIf(!existsSync(CHROMIUM_PATH))("dashboard in a browser", () => {
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = await startGateway({ PAYMENT_WEBHOOK_SECRET: "whsec_browser_test" });
    await gateway.sql(
      `INSERT INTO gpu_workers (id, url, secret, models) VALUES ('fake-1', '${upstream.url}', '${upstream.secret}', '["deepseek-chat","deepseek-reasoner"]')`,
    );
    browser = await launchBrowser();
    context = browser.context;
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: gateway.url });
    page = context.pages()[0] ?? (await context.newPage());
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.stop();
    await upstream?.close();
  });

  it("signs up a new user", async () => {
    await page.goto(`${gateway.url}/dashboard/`);
    await page.waitForURL(/\/dashboard\/signin$/);
    await page.getByRole("link", { name: "Create an account" }).click();
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: "Usage" }).waitFor();
    const cookies = await context.cookies(gateway.url);
    const session = cookies.find((c) => c.name === "__Host-dash_session");
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict" });
    expect(await page.evaluate(() => document.cookie)).toBe("");
  });

  it("creates a key from the keyboard, shows it once with a copy button, and renders a hostile name as text", async () => {
    await page.getByRole("link", { name: "API keys" }).click();
    await page.getByRole("heading", { name: "API keys" }).waitFor();
    await page.getByLabel("Name of the new key").focus();
    await page.keyboard.type(HOSTILE_NAME);
    await page.keyboard.press("Enter");
    const shown = page.getByTestId("new-key");
    await shown.waitFor();
    apiKey = await shown.inputValue();
    expect(apiKey).toMatch(/^sk-[0-9a-f]{32}$/);
    await page.getByRole("button", { name: "Copy", exact: true }).click();
    await page.getByText(/Copied\.|Press Ctrl\+C/).waitFor();
    const clip = await page.evaluate(() => navigator.clipboard.readText().catch(() => null));
    if (clip !== null) expect(clip).toBe(apiKey);

    // The name is on the page as text, and nothing in it ran.
    await page.locator(".key-name", { hasText: HOSTILE_NAME }).waitFor();
    expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined();
    expect(await page.locator("main img, main script").count()).toBe(0);

    // After "Done" the key is gone from the page; the list shows only prefix and last four.
    await page.getByRole("button", { name: /Done, I have saved it/ }).click();
    expect(await page.content()).not.toContain(apiKey);
    await page.getByText(`${apiKey.slice(0, 7)}…${apiKey.slice(-4)}`).waitFor();
    const keys = await (await context.request.get(`${gateway.url}/dashboard/api/keys`)).json();
    keyId = keys.data[0].id;
  });

  it("calls the API with the key, then shows the usage and the balance change", async () => {
    await page.getByRole("link", { name: "Billing" }).click();
    const before = await page.getByTestId("balance-total").textContent();
    expect(before).toBe("$5.00");

    const res = await chat(apiKey, "Hello there [[words:5]]");
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.usage.completion_tokens).toBeGreaterThan(0);

    const records = await gateway.sql<{ request_id: string; cost_micros: number }>(`SELECT * FROM usage_records WHERE key_id = '${keyId}'`);
    expect(records).toHaveLength(1);
    const cost = records[0]!.cost_micros;
    expect(cost).toBeGreaterThan(0);

    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { name: "Requests" }).waitFor();
    const table = page.getByRole("region", { name: "Requests" });
    await table.getByRole("cell", { name: "deepseek-chat" }).first().waitFor();
    expect(await table.locator("tbody tr").count()).toBe(1);
    await expect.poll(() => page.getByTestId("usage-requests").textContent()).toBe("1");
    expect(await page.getByTestId("cache-hit-rate").textContent()).toMatch(/%$/);

    await page.getByRole("link", { name: "Billing" }).click();
    const micros = 5_000_000 - cost;
    const after = await page.getByTestId("balance-total").textContent();
    expect(after).not.toBe(before);
    expect(after).toBe(`$${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, "0").replace(/0{1,4}$/, "").padEnd(2, "0")}`);
    await page.getByRole("region", { name: "Recent charges" }).getByRole("cell", { name: "deepseek-chat" }).waitFor();
  });

  it("exports CSV whose rows match the usage records", async () => {
    await chat(apiKey, "Second call [[words:3]]");
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { name: "Export" }).waitFor();
    await page.getByLabel("Format").selectOption("csv");
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("export-link").click()]);
    const csv = readFileSync((await download.path())!, "utf8");
    const [header, ...rows] = parseCsv(csv);
    const records = await gateway.sql<Record<string, any>>(`SELECT * FROM usage_records WHERE key_id = '${keyId}' ORDER BY completed_at, request_id`);
    expect(rows).toHaveLength(records.length);
    expect(records.length).toBe(2);
    const col = (name: string) => header!.indexOf(name);
    rows.forEach((row, i) => {
      const r = records[i]!;
      expect(row[col("request_id")]).toBe(r.request_id);
      expect(row[col("model")]).toBe(r.model);
      expect(row[col("cache_hit_tokens")]).toBe(String(r.cache_hit_tokens));
      expect(row[col("cache_miss_tokens")]).toBe(String(r.cache_miss_tokens));
      expect(row[col("completion_tokens")]).toBe(String(r.completion_tokens));
      expect(row[col("cost_micros")]).toBe(String(r.cost_micros));
      expect(row[col("completed_at")]).toBe(new Date(r.completed_at).toISOString());
      // The key's name starts with "<", so it is exported as is; a formula-like name would get a leading apostrophe.
      expect(row[col("key_name")]).toBe(HOSTILE_NAME);
    });
  });

  it("keeps CSRF harmless: a page on another origin cannot act for the signed-in user", async () => {
    const evilPort = await freePort();
    const target = `${gateway.url}/dashboard/api/keys`;
    const evil: Server = createServer((_req, res) => {
      res.setHeader("content-type", "text/html");
      res.end(`<!doctype html><form id="f" method="POST" action="${target}"><input name="name" value="csrf-form"></form>
        <script>
          fetch(${JSON.stringify(target)}, { method: "POST", credentials: "include", headers: { "content-type": "text/plain" }, body: JSON.stringify({ name: "csrf-fetch" }) })
            .catch(() => {}).finally(() => { document.title = "fetched"; document.getElementById("f").submit(); });
        </script>`);
    });
    await new Promise<void>((r) => evil.listen(evilPort, "127.0.0.1", r));
    try {
      const attacker = await context.newPage();
      // Same site (localhost), other origin: SameSite lets the cookie through, so the CSRF
      // token and the Origin check are what stop it.
      await attacker.goto(`http://localhost:${evilPort}/`);
      await attacker.waitForURL(/dashboard\/api\/keys/, { timeout: 10_000 }).catch(() => undefined);
      await attacker.close();
    } finally {
      evil.close();
    }
    const names = (await (await context.request.get(`${gateway.url}/dashboard/api/keys`)).json()).data.map((k: any) => k.name);
    expect(names).toEqual([HOSTILE_NAME]);
  });

  it("works at 390 px and at 1280 px", async () => {
    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: 844 });
      for (const path of ["/dashboard/usage", "/dashboard/keys", "/dashboard/billing"]) {
        await page.goto(`${gateway.url}${path}`);
        await page.locator("main h1").waitFor();
        await page.waitForLoadState("networkidle");
        expect(await overflowing(page), `${path} at ${width}px`).toEqual([]);
      }
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("revokes the key with confirmation, using only the keyboard, after which the API refuses it", async () => {
    await page.goto(`${gateway.url}/dashboard/keys`);
    const revoke = page.getByRole("button", { name: /^Revoke key / });
    await revoke.focus();
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog", { name: "Revoke this key?" });
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Revoke key" }).focus();
    await page.keyboard.press("Enter");
    await page.getByText(/^revoked /).waitFor();
    const res = await chat(apiKey, "after revocation");
    expect(res.status).toBe(401);
    expect((await res.json()).error.message).toContain(apiKey.slice(-4));
  });

  it("shows another account nothing of the first", async () => {
    await page.getByRole("link", { name: "Account" }).click();
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await page.waitForURL(/\/dashboard\/signin$/);
    await page.getByRole("link", { name: "Create an account" }).click();
    await page.getByLabel("Email").fill(`other-${EMAIL}`);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: "Usage" }).waitFor();
    await page.getByRole("region", { name: "Requests" }).getByText("Nothing yet").waitFor();
    expect(await page.getByTestId("usage-requests").textContent()).toBe("0");

    await page.getByRole("link", { name: "API keys" }).click();
    await page.getByRole("region", { name: "Your API keys" }).getByText("Nothing yet").waitFor();
    await page.getByRole("link", { name: "Billing" }).click();
    expect(await page.getByTestId("balance-total").textContent()).toBe("$5.00");
    expect(await page.content()).not.toContain("deepseek-chat");

    const api = (path: string) => context.request.get(`${gateway.url}/dashboard/api${path}`);
    const exported = await (await api("/usage/export?format=csv")).text();
    expect(parseCsv(exported)).toHaveLength(1); // header only
    expect((await (await api(`/usage/records?key_id=${keyId}`)).json()).data).toEqual([]);
  });

  it("shows an operator's grant, with who made it, on the Audit log page", async () => {
    const operator = `other-${EMAIL}`;
    await gateway.sql(`UPDATE users SET role = 'admin' WHERE email = '${operator}'`);
    const session = await (await context.request.get(`${gateway.url}/dashboard/api/auth/session`)).json();
    const [customer] = await gateway.sql<{ id: string }>(`SELECT a.id FROM accounts a JOIN users u ON u.id = a.owner_user_id WHERE u.email = '${EMAIL}'`);
    const grant = await context.request.post(`${gateway.url}/dashboard/api/admin/accounts/${customer!.id}/grants`, {
      headers: { "x-csrf-token": session.csrf_token, origin: gateway.url },
      data: { kind: "granted", amount: "1.25", note: "goodwill" },
    });
    expect(grant.status()).toBe(201);

    await page.goto(`${gateway.url}/dashboard/admin/audit`);
    const row = page.getByTestId("audit-log").getByRole("row").filter({ hasText: customer!.id });
    await row.waitFor();
    expect(await row.textContent()).toContain(operator);
    expect(await row.textContent()).toContain("grant");
    expect(await row.textContent()).toContain("goodwill");
  });

  it("changes the password on the Account page, then resets it with an operator's one-time link", async () => {
    const email = `other-${EMAIL}`;
    await page.getByRole("link", { name: "Account", exact: true }).click();
    const form = page.getByRole("form", { name: "Change password" });
    await form.getByLabel("Current password").fill(PASSWORD);
    await form.getByLabel("New password").fill("a changed long password");
    await form.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Password changed. Other browsers were signed out.").waitFor();
    await page.getByRole("link", { name: "API keys" }).click(); // this browser stays signed in
    await page.getByRole("heading", { name: "API keys" }).waitFor();

    const token = randomBytes(32).toString("hex");
    const hash = createHash("sha256").update(token).digest("hex");
    await gateway.sql(
      `INSERT INTO password_resets (token_hash, user_id, expires_at) SELECT '${hash}', id, ${Date.now() + 3_600_000} FROM users WHERE email = '${email}'`,
    );
    await page.getByRole("link", { name: "Account", exact: true }).click();
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await page.waitForURL(/\/dashboard\/signin$/);
    await page.goto(`${gateway.url}/dashboard/reset-password?token=${token}`);
    await page.getByLabel("New password").fill("a reset long password");
    await page.getByRole("button", { name: "Set new password" }).click();
    await page.waitForURL(/\/dashboard\/signin$/);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("a reset long password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Usage" }).waitFor();
  });

  it("sends the key and password forms once however fast they are submitted", async () => {
    await page.getByRole("link", { name: "API keys" }).click();
    await page.getByLabel("Name of the new key").fill("double-click");
    expect(await doubleSubmit(page, "Create key")).toBe(true);
    await page.getByTestId("new-key").waitFor();
    await expect.poll(() => page.getByRole("button", { name: "Create key" }).isEnabled()).toBe(true);
    const keys = (await (await context.request.get(`${gateway.url}/dashboard/api/keys`)).json()).data;
    expect(keys.filter((k: any) => k.name === "double-click")).toHaveLength(1);

    await page.getByRole("link", { name: "Account", exact: true }).click();
    const form = page.getByRole("form", { name: "Change password" });
    await form.getByLabel("Current password").fill("a reset long password");
    await form.getByLabel("New password").fill("a third long password");
    expect(await doubleSubmit(page, "Change password")).toBe(true);
    await page.getByText("Password changed. Other browsers were signed out.").waitFor();
    expect(await form.getByRole("alert").isHidden()).toBe(true);
  });
});
