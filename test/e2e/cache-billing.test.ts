// Context caching and money, end to end: a second request sharing a long prefix reports
// prompt_cache_hit_tokens, its usage row is priced at the cache-hit price with the tier of its
// completion time, and the account's balance falls by exactly the sum of the usage rows.
import { beforeAll, describe, expect, it } from "vitest";
import { expectedCost, isOffPeak, longText, PRICES, query, requestIdOf, signUp, usageRows, type TestAccount } from "./support";

let acct: TestAccount;
beforeAll(async () => {
  acct = await signUp();
});

describe("prefix cache and billing", () => {
  it("the registry carries the contract's prices", async () => {
    const rows = await query<any>("SELECT id, cache_hit_price, cache_miss_price, output_price, off_peak_discount_percent FROM models ORDER BY id");
    for (const [id, p] of Object.entries(PRICES)) {
      expect(rows.find((r) => r.id === id)).toMatchObject({
        cache_hit_price: p.hit,
        cache_miss_price: p.miss,
        output_price: p.output,
        off_peak_discount_percent: p.offPeakPercent,
      });
    }
  });

  it("a second request sharing a long prefix hits the cache, is billed at the hit price, and the balance falls by exactly the usage cost", async () => {
    const system = longText("billing");
    const ask = (question: string) =>
      requestIdOf(
        acct.client.chat.completions.create({
          model: "deepseek-chat",
          messages: [
            { role: "system", content: system },
            { role: "user", content: question },
          ],
          max_tokens: 4,
        }),
      );
    const before = await acct.balanceMicros();
    const first = await ask("First question: what is the river's number?");
    const second = await ask("Second question, different: which colour comes next?");

    const u1 = first.data.usage as any;
    const u2 = second.data.usage as any;
    expect(u1.prompt_tokens).toBeGreaterThan(640);
    expect(u1.prompt_cache_hit_tokens).toBe(0);
    expect(u2.prompt_cache_hit_tokens).toBeGreaterThan(0);
    expect(u2.prompt_cache_hit_tokens % 64).toBe(0);
    // Everything up to the system prompt's end is shared; the hit covers most of it.
    expect(u2.prompt_cache_hit_tokens).toBeGreaterThanOrEqual(u1.prompt_tokens - 64 - 40);
    expect(u2.prompt_cache_hit_tokens + u2.prompt_cache_miss_tokens).toBe(u2.prompt_tokens);

    const rows = await usageRows([first.requestId, second.requestId]);
    for (const [row, usage] of [
      [rows[0]!, u1],
      [rows[1]!, u2],
    ] as const) {
      expect(row.status).toBe("ok");
      expect([row.cache_hit_tokens, row.cache_miss_tokens, row.completion_tokens]).toEqual([
        usage.prompt_cache_hit_tokens,
        usage.prompt_cache_miss_tokens,
        usage.completion_tokens,
      ]);
      // The tier is the one of the completion timestamp.
      expect(row.price_tier).toBe(isOffPeak(row.completed_at) ? "off_peak" : "standard");
      expect(row.cost_micros).toBe(
        expectedCost("deepseek-chat", { hit: row.cache_hit_tokens, miss: row.cache_miss_tokens, output: row.completion_tokens }, row.price_tier),
      );
    }
    // The hit tokens were billed at the hit price, not the miss price.
    const second_ = rows[1]!;
    const allMiss = expectedCost("deepseek-chat", { hit: 0, miss: second_.cache_hit_tokens + second_.cache_miss_tokens, output: second_.completion_tokens }, second_.price_tier);
    expect(second_.cost_micros).toBeLessThan(allMiss);

    const spent = rows[0]!.cost_micros + rows[1]!.cost_micros;
    expect(spent).toBeGreaterThan(0);
    await expect.poll(() => acct.balanceMicros(), { timeout: 15_000 }).toBe(before - spent);
  });

  it("streams report cache hits too, and another account does not share the cache", async () => {
    const system = longText("shared-text");
    const body = (q: string) => ({
      model: "deepseek-chat" as const,
      messages: [
        { role: "system" as const, content: system },
        { role: "user" as const, content: q },
      ],
      max_tokens: 3,
      stream: true as const,
      stream_options: { include_usage: true },
    });
    const lastUsage = async (client: TestAccount["client"], q: string) => {
      let usage: any = null;
      for await (const chunk of await client.chat.completions.create(body(q))) if (chunk.usage) usage = chunk.usage;
      return usage;
    };
    const other = await signUp();
    expect((await lastUsage(acct.client, "one")).prompt_cache_hit_tokens).toBe(0);
    expect((await lastUsage(other.client, "two")).prompt_cache_hit_tokens).toBe(0); // isolation
    expect((await lastUsage(acct.client, "three")).prompt_cache_hit_tokens).toBeGreaterThan(0);
  });
});
