import { describe, expect, it } from "vitest";
import { csvCell } from "../../../workers/gateway/src/dashboard/csv";
import { recordUsage, signedUp } from "./browser-client";
import { parseCsv } from "../../support/csv";


const DAY = 24 * 3600_000;

describe("CSV cells", () => {
  it("neutralises formula starts and quotes separators", () => {
    for (const start of ["=", "+", "-", "@", "\t", "\r"]) expect(csvCell(`${start}SUM(A1)`).replace(/^"/, "")).toMatch(/^'/);
    expect(csvCell('=HYPERLINK("http://x","y")')).toBe(`"'=HYPERLINK(""http://x"",""y"")"`);
    expect(csvCell("a,b")).toBe('"a,b"');
    expect(csvCell("line\nbreak")).toBe('"line\nbreak"');
    expect(csvCell("plain")).toBe("plain");
    expect(csvCell(42)).toBe("42");
    expect(csvCell(null)).toBe("");
  });
});

describe("usage", () => {
  it("pages the per-request table newest first with filters", async () => {
    const { client, accountId } = await signedUp();
    const a = await client.createKey("a");
    const b = await client.createKey("b");
    const t0 = Date.UTC(2026, 0, 10, 12);
    await recordUsage([
      ...Array.from({ length: 7 }, (_, i) => ({ accountId, keyId: a.id, completedAt: t0 + i * 1000, requestId: `ra${i}` })),
      { accountId, keyId: b.id, completedAt: t0 + 500, requestId: "rb0", model: "deepseek-reasoner", status: "failed" as const },
    ]);
    const range = `from=${t0 - DAY}&to=${t0 + DAY}`;
    const first = await (await client.get(`/usage/records?${range}&limit=3`)).json<any>();
    expect(first.data.map((r: any) => r.request_id)).toEqual(["ra6", "ra5", "ra4"]);
    const second = await (await client.get(`/usage/records?${range}&limit=3&cursor=${first.next_cursor}`)).json<any>();
    expect(second.data.map((r: any) => r.request_id)).toEqual(["ra3", "ra2", "ra1"]);
    const byKey = await (await client.get(`/usage/records?${range}&key_id=${b.id}`)).json<any>();
    expect(byKey.data).toHaveLength(1);
    expect(byKey.data[0]).toMatchObject({ request_id: "rb0", key_name: "b", model: "deepseek-reasoner" });
    const byStatus = await (await client.get(`/usage/records?${range}&status=failed`)).json<any>();
    expect(byStatus.data.map((r: any) => r.request_id)).toEqual(["rb0"]);
    const byModel = await (await client.get(`/usage/records?${range}&model=deepseek-chat`)).json<any>();
    expect(byModel.data).toHaveLength(7);
    // Outside the range: nothing.
    expect((await (await client.get(`/usage/records?from=${t0 + DAY}&to=${t0 + 2 * DAY}`)).json<any>()).data).toHaveLength(0);
  });

  it("returns daily roll-ups by model and key for the UTC days of the range", async () => {
    const { client, accountId } = await signedUp();
    const k = await client.createKey("daily");
    const day1 = Date.UTC(2026, 1, 1, 10);
    await recordUsage([
      { accountId, keyId: k.id, completedAt: day1, hit: 64, miss: 36, cost: 1000 },
      { accountId, keyId: k.id, completedAt: day1 + 1000, hit: 0, miss: 100, cost: 2000 },
      { accountId, keyId: k.id, completedAt: day1 + DAY, cost: 5 },
    ]);
    const res = await (await client.get(`/usage/daily?from=${Date.UTC(2026, 1, 1)}&to=${Date.UTC(2026, 1, 2)}`)).json<any>();
    expect(res.first_day).toBe("2026-02-01");
    expect(res.last_day).toBe("2026-02-01");
    expect(res.data).toEqual([
      expect.objectContaining({ day: "2026-02-01", model: "deepseek-chat", key_id: k.id, key_name: "daily", requests: 2, cache_hit_tokens: 64, cache_miss_tokens: 136, cost_micros: 3000 }),
    ]);
  });
});

describe("usage export", () => {
  it("writes one CSV row per usage record, with formula-looking key names neutralised", async () => {
    const { client, accountId } = await signedUp();
    const key = await client.createKey("=HYPERLINK(\"http://evil\",\"click\")");
    const t0 = Date.UTC(2026, 2, 3, 8);
    await recordUsage([
      { accountId, keyId: key.id, completedAt: t0, requestId: "e1", hit: 64, miss: 10, completion: 7, cost: 1234567 },
      { accountId, keyId: key.id, completedAt: t0 + 1, requestId: "e2", cost: 1 },
    ]);
    const res = await client.get(`/usage/export?format=csv&from=${t0 - 1000}&to=${t0 + 1000}`);
    expect(res.headers.get("content-type")).toContain("text/csv");
    expect(res.headers.get("content-disposition")).toMatch(/attachment; filename="usage-requests-2026-03-03-to-2026-03-03.csv"/);
    const rows = parseCsv(await res.text());
    const [header, ...body] = rows;
    expect(header).toEqual([
      "request_id", "completed_at", "started_at", "model", "endpoint", "key_id", "key_name", "status", "price_tier",
      "prompt_tokens", "cache_hit_tokens", "cache_miss_tokens", "completion_tokens", "reasoning_tokens", "cost_usd", "cost_micros",
    ]);
    expect(body).toHaveLength(2);
    const first = Object.fromEntries(header!.map((h, i) => [h, body[0]![i]]));
    expect(first).toMatchObject({
      request_id: "e1",
      completed_at: new Date(t0).toISOString(),
      key_name: `'=HYPERLINK("http://evil","click")`,
      prompt_tokens: "74",
      cache_hit_tokens: "64",
      completion_tokens: "7",
      cost_usd: "1.234567",
      cost_micros: "1234567",
    });
  });

  it("writes JSON Lines, per request and by day", async () => {
    const { client, accountId } = await signedUp();
    const key = await client.createKey("jsonl");
    const t0 = Date.UTC(2026, 3, 5, 23, 59);
    await recordUsage([
      { accountId, keyId: key.id, completedAt: t0, cost: 10 },
      { accountId, keyId: key.id, completedAt: t0 + 120_000, cost: 20 }, // next UTC day
    ]);
    const range = `from=${Date.UTC(2026, 3, 5)}&to=${Date.UTC(2026, 3, 7)}`;
    const perRequest = (await (await client.get(`/usage/export?format=jsonl&${range}`)).text()).trim().split("\n").map((l) => JSON.parse(l));
    expect(perRequest.map((r) => r.cost_micros)).toEqual([10, 20]);
    const byDay = (await (await client.get(`/usage/export?format=jsonl&group=day&${range}`)).text()).trim().split("\n").map((l) => JSON.parse(l));
    expect(byDay.map((r) => [r.day, r.key_name, r.requests, r.cost_micros, r.cost_usd])).toEqual([
      ["2026-04-05", "jsonl", 1, 10, "0.000010"],
      ["2026-04-06", "jsonl", 1, 20, "0.000020"],
    ]);
    expect((await client.get("/usage/export?format=xlsx")).status).toBe(400);
  });

  it("streams a range larger than one page in order, without losing or repeating rows", async () => {
    const { client, accountId } = await signedUp();
    const t0 = Date.UTC(2026, 4, 1);
    const n = 1234;
    await recordUsage(
      Array.from({ length: n }, (_, i) => ({ accountId, keyId: null, completedAt: t0 + Math.floor(i / 3), requestId: `big-${String(i).padStart(5, "0")}`, cost: i })),
    );
    const res = await client.get(`/usage/export?format=csv&from=${t0}&to=${t0 + DAY}`);
    const rows = parseCsv(await res.text()).slice(1);
    expect(rows).toHaveLength(n);
    expect(new Set(rows.map((r) => r[0])).size).toBe(n);
    expect(rows.reduce((sum, r) => sum + Number(r[15]), 0)).toBe((n * (n - 1)) / 2);
  });
});
