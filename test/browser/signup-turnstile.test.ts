// The sign-up page with a Turnstile site key configured (as in production): the widget's
// container is rendered with that key, the sign-in page has none. The widget's script is
// Cloudflare's and is not fetched here (the route is blocked: tests run offline).
import { existsSync } from "node:fs";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM_PATH, launchBrowser } from "./chromium";
import { type Gateway, startGateway } from "./gateway-process";

const SITE_KEY = "1x00000000000000000000AA";
let gateway: Gateway;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let page: Page;

describe.skipIf(!existsSync(CHROMIUM_PATH))("sign-up with Turnstile configured", () => {
  beforeAll(async () => {
    gateway = await startGateway({ TURNSTILE_SITE_KEY: SITE_KEY });
    browser = await launchBrowser();
    page = browser.context.pages()[0] ?? (await browser.context.newPage());
    await page.route("https://challenges.cloudflare.com/**", (route) => route.abort());
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.stop();
  });

  it("renders the widget on the sign-up form only", async () => {
    await page.goto(`${gateway.url}/dashboard/signup`);
    await page.locator(`form .turnstile[data-sitekey="${SITE_KEY}"]`).waitFor({ state: "attached" });
    await page.goto(`${gateway.url}/dashboard/signin`);
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    expect(await page.locator(".turnstile").count()).toBe(0);
  });
});
