// Admission is limited by the money alone: the hold is the request's worst case priced on its
// exact prompt count, so a balance of exactly that admits and one micro-unit less refuses, and a
// balance covering N worst cases admits N requests at once.
import { describe, expect, it } from "vitest";
import { worstCaseCostMicros } from "../../../workers/gateway/src/billing/pricing";
import { findModel } from "../../../workers/gateway/src/db/models";
import { countChatPromptTokens } from "../../../workers/gateway/src/tokenizer";
import { post } from "../chat/helpers";
import { gatewayEnv, payingAccount, total, usageSums } from "./ledger-helpers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The gateway's exact worst case for a one-message chat request (its own tokenizer and prices).
async function worstCase(content: string, maxTokens: number): Promise<{ promptTokens: number; micros: number }> {
  const model = (await findModel(gatewayEnv.DB, "deepseek-chat"))!;
  const promptTokens = countChatPromptTokens([{ role: "user", content }], { model: "deepseek-chat" });
  return { promptTokens, micros: worstCaseCostMicros(model, promptTokens, maxTokens) };
}

async function settled(accountId: string): Promise<void> {
  for (let i = 0; i < 200 && (await total(accountId)).reserved > 0; i++) await sleep(25);
}

describe("admission holds the exact worst case", () => {
  it('"hi" with max_tokens 1 (worst case about 3) is admitted on a balance of 10', async () => {
    const { micros } = await worstCase("hi", 1);
    expect(micros).toBeLessThanOrEqual(10);
    const { account: id, key } = await payingAccount(10);
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 1 });
    expect(res.status).toBe(200);
    await res.text();
    await settled(id);
  });

  it("a balance of exactly the worst case admits; one micro-unit less refuses with 402", async () => {
    const content = "boundary [[words:1]] " + "tell me about the sea. ".repeat(8);
    const { micros } = await worstCase(content, 64);
    const body = { model: "deepseek-chat", messages: [{ role: "user", content }], max_tokens: 64 };

    const exact = await payingAccount(micros);
    const admitted = await post("/chat/completions", exact.key, body);
    expect(admitted.status).toBe(200);
    await admitted.text();

    const short = await payingAccount(micros - 1);
    const refused = await post("/chat/completions", short.key, body);
    expect(refused.status).toBe(402);
    expect(await refused.json()).toMatchObject({ error: { message: "Insufficient Balance" } });
    expect(await total(short.account)).toMatchObject({ total: micros - 1, reserved: 0 });
    await settled(exact.account);
  });
});

describe("admission under concurrency is limited only by the money", () => {
  it("2,500 micro-USD and 200 concurrent requests of worst case 132: at least 17 admitted, never more served than the balance", async () => {
    // 225 prompt tokens with max_tokens 64 at deepseek-chat prices: 60.75 + 70.4 -> 132 micros.
    let content = "[[words:2]] [[slow:40]]";
    while ((await worstCase(content, 64)).promptTokens < 225) content += " sea";
    const { promptTokens, micros } = await worstCase(content, 64);
    expect(promptTokens).toBe(225);
    expect(micros).toBe(132);

    const balance = 2_500;
    const { account: id, key } = await payingAccount(balance);
    const body = { model: "deepseek-chat", messages: [{ role: "user", content }], max_tokens: 64 };
    const statuses = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const res = await post("/chat/completions", key, body);
        await res.text();
        return res.status;
      }),
    );
    const ok = statuses.filter((s) => s === 200).length;
    expect(ok + statuses.filter((s) => s === 402).length).toBe(200);
    // 18 worst cases fit; a request that settled early frees money for one more, so no upper bound
    // on admissions here: what was served is bounded below.
    expect(ok).toBeGreaterThanOrEqual(17);

    await settled(id);
    const after = await total(id);
    const sums = await usageSums(id);
    expect(sums.rows).toBe(ok);
    expect(after.total).toBeGreaterThanOrEqual(0);
    expect(balance - after.total).toBe(sums.rowCost);
    expect(sums.rowCost).toBeLessThanOrEqual(balance);
  });
});
