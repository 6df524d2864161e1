// The operator's settlement views against a throwaway local D1: `dead-settlements` lists the
// settlement queue's dead letters, and `reconcile` compares what the GPU workers say they served
// (GET /v1/usage, behind the worker secret) with the usage rows, naming every request served but
// not settled.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { query } from "../../scripts/lib/local-d1";

const repoRoot = join(import.meta.dirname, "..", "..");
const persistTo = mkdtempSync(join(tmpdir(), "settlements-cli-"));
const target = { remote: false, persistTo };
process.env.WORKER_SECRET_KEY = Buffer.alloc(32, 7).toString("base64");

function admin(...args: string[]): any {
  const out = execFileSync(join(repoRoot, "node_modules", ".bin", "tsx"), ["scripts/admin.ts", ...args, "--persist-to", persistTo, "--json"], { cwd: repoRoot, encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop()!);
}

// The same without blocking: the stand-in worker below answers from this process meanwhile.
async function adminAsync(...args: string[]): Promise<any> {
  const { stdout } = await promisify(execFile)(join(repoRoot, "node_modules", ".bin", "tsx"), ["scripts/admin.ts", ...args, "--persist-to", persistTo, "--json"], { cwd: repoRoot, encoding: "utf8" });
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

// A GPU worker's usage endpoint as gpu_worker/server/usage_log.py serves it, with fixed records.
const now = Date.now();
const record = (request_id: string, minutesAgo: number, extra: Record<string, unknown> = {}) => ({
  seq: 0, request_id, endpoint: "chat", model: "deepseek-chat", finish_reason: "stop", prompt_tokens: 20,
  prompt_cache_hit_tokens: 0, completion_tokens: 5, reasoning_tokens: 0, finished_at: now - minutesAgo * 60_000, ...extra,
});
const records = [
  record("settled-1", 30),
  record("lost-1", 20),
  record("dead-1", 15),
  record("aborted-before-a-token", 10, { finish_reason: "abort", completion_tokens: 0 }),
  record("just-now", 0),
  record("long-ago", 60 * 30),
].map((r, i) => ({ ...r, seq: i + 1 }));
let server: Server;
let url = "";

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.headers.authorization !== "Bearer worker-secret-1") {
      res.writeHead(401).end("{}");
      return;
    }
    const params = new URL(req.url!, "http://x").searchParams;
    const since = Number(params.get("since") ?? 0);
    const after = Number(params.get("after") ?? 0);
    const limit = Number(params.get("limit") ?? 1000);
    const page = records.filter((r) => r.seq > after && r.finished_at >= since).slice(0, Math.min(limit, 2)); // small pages: paging is exercised
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ object: "list", data: page, next_after: page.length === 2 ? page[1]!.seq : null }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server?.close();
  rmSync(persistTo, { recursive: true, force: true });
});

describe("settlement views of the operator CLI", () => {
  it("dead-settlements lists the queue's dead letters with their settlement", () => {
    admin("migrate");
    const settlement = { accountId: "acct_x", requestId: "dead-1", usage: { promptTokens: 20, completionTokens: 5 } };
    query(target, `INSERT INTO dead_settlements (request_id, account_id, settlement, attempts, dead_at) VALUES ('dead-1', 'acct_x', '${JSON.stringify(settlement)}', 21, ${now})`);
    const listed = admin("dead-settlements");
    expect(listed).toEqual([{ request_id: "dead-1", account_id: "acct_x", attempts: 21, dead_at: now, resettled_at: null, settlement }]);
  });

  it("reconcile names the requests a worker served that have no usage row, and only those", async () => {
    admin("add-worker", "--url", url, "--secret", "worker-secret-1", "--models", "deepseek-chat", "--id", "gpu-a");
    query(
      target,
      `INSERT INTO usage_records (request_id, account_id, model, endpoint, cache_hit_tokens, cache_miss_tokens, completion_tokens, reasoning_tokens, cost_micros, price_tier, status, started_at, completed_at)
       VALUES ('settled-1', 'acct_x', 'deepseek-chat', 'chat.completions', 0, 20, 5, 0, 11, 'standard', 'ok', ${now - 1_800_001}, ${now - 1_800_000})`,
    );
    const report = await adminAsync("reconcile", "--since-hours", "24", "--grace-seconds", "60");
    expect(report.workers).toEqual([{ id: "gpu-a", served: 3 }]);
    expect(report.served).toBe(3);
    expect(report.settled).toBe(1);
    expect(report.unsettled.map((u: any) => [u.request_id, u.worker, u.dead_lettered])).toEqual([
      ["lost-1", "gpu-a", false],
      ["dead-1", "gpu-a", true],
    ]);
    expect(report.unsettled[0]).toMatchObject({ prompt_tokens: 20, completion_tokens: 5, model: "deepseek-chat" });
  });

  it("reconcile reports a worker it cannot read instead of calling its requests settled", async () => {
    admin("add-worker", "--url", url, "--secret", "not-the-secret", "--models", "deepseek-chat", "--id", "gpu-a");
    const report = await adminAsync("reconcile");
    expect(report.workers).toEqual([{ id: "gpu-a", served: 0, error: "GET /v1/usage answered 401" }]);
  });
});
