// Reconciliation, end to end: the GPU workers' own per-request records (GET /v1/usage) against the
// gateway's usage rows. Requests served and settled are not reported; a request whose settlement
// never landed (its usage row removed here, as an isolate dying before settling would leave it)
// is named by `npm run admin -- reconcile`, with the tokens the worker served.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { alive } from "./launcher";
import { platform, query, requestIdOf, signUp, usageRows, type TestAccount } from "./support";

const repoRoot = join(import.meta.dirname, "..", "..");

function reconcile(): any {
  const out = execFileSync(join(repoRoot, "node_modules", ".bin", "tsx"), ["scripts/admin.ts", "reconcile", "--since-hours", "1", "--grace-seconds", "0", "--persist-to", platform().persistTo, "--json"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  return JSON.parse(out.trim().split("\n").pop()!);
}

let acct: TestAccount;
beforeAll(async () => {
  acct = await signUp();
});

describe("reconcile", () => {
  it("names a request a worker served whose settlement never landed, and no settled one", async () => {
    const ask = (content: string) => requestIdOf(acct.client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content }], max_tokens: 3 }));
    const served = [await ask("first of three"), await ask("second of three"), await ask("third of three")];
    const ids = served.map((s) => s.requestId);
    await usageRows(ids);
    await query(`DELETE FROM usage_records WHERE request_id = '${ids[1]}'`);

    const report = reconcile();
    // routing-failover.test.ts may have SIGKILLed a worker earlier in this run: only live ones must answer.
    expect(report.workers.map((w: any) => w.error ?? null)).toEqual(platform().workers.map((w) => (alive(w.pid) ? null : expect.any(String))));
    const unsettled = report.unsettled.filter((u: any) => ids.includes(u.request_id));
    expect(unsettled).toHaveLength(1);
    expect(unsettled[0]).toMatchObject({ request_id: ids[1], dead_lettered: false, completion_tokens: served[1]!.data.usage!.completion_tokens, prompt_tokens: served[1]!.data.usage!.prompt_tokens });
  });
});
