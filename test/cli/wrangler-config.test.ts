// wrangler.toml as Cloudflare will read it: Durable Object migrations that a fresh account
// accepts, a production environment that declares every binding (wrangler does not inherit
// them) and hands out no free credit, and the deploy script's refusals.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { unstable_readConfig } from "wrangler";
import { describe, expect, it } from "vitest";

const repoRoot = join(import.meta.dirname, "..", "..");
const configPath = join(repoRoot, "wrangler.toml");
const top = unstable_readConfig({ config: configPath });
const production = unstable_readConfig({ config: configPath, env: "production" });

// The classes the gateway script exports (its entry re-exports each Durable Object class).
const exported = new Set([...readFileSync(resolve(repoRoot, top.main!), "utf8").matchAll(/export \{ (\w+) \} from/g)].map((m) => m[1]!));

describe("Durable Object migrations", () => {
  it("apply in order on a fresh account: every class they create is exported, none is created then deleted", () => {
    const live = new Set<string>();
    for (const m of top.migrations) {
      for (const name of [...(m.new_classes ?? []), ...(m.new_sqlite_classes ?? [])]) {
        expect(live.has(name), `${m.tag} creates ${name} twice`).toBe(false);
        expect(exported.has(name), `${m.tag} creates ${name}, which the script does not export`).toBe(true);
        live.add(name);
      }
      for (const { from, to } of m.renamed_classes ?? []) {
        expect(live.delete(from), `${m.tag} renames ${from}, which does not exist`).toBe(true);
        expect(exported.has(to), `${m.tag} renames to ${to}, which the script does not export`).toBe(true);
        live.add(to);
      }
      for (const name of m.deleted_classes ?? []) {
        expect(live.has(name), `${m.tag} deletes ${name} that an earlier step creates: a fresh account rejects creating a class the script does not export`).toBe(false);
      }
    }
    const tags = top.migrations.map((m) => m.tag);
    expect(new Set(tags).size).toBe(tags.length);
  });

  it("every Durable Object binding, here and in production, names a class the migrations create", () => {
    const created = new Set(top.migrations.flatMap((m) => [...(m.new_classes ?? []), ...(m.new_sqlite_classes ?? [])]));
    for (const config of [top, production]) {
      for (const b of config.durable_objects.bindings) expect(created.has(b.class_name), `${b.name} -> ${b.class_name}`).toBe(true);
    }
  });
});

describe("[env.production]", () => {
  it("declares every binding the top level has (wrangler does not inherit them)", () => {
    const names = (config: typeof top) => ({
      d1: config.d1_databases.map((d) => d.binding).sort(),
      durableObjects: config.durable_objects.bindings.map((b) => `${b.name}:${b.class_name}`).sort(),
      queueProducers: (config.queues.producers ?? []).map((q) => `${q.binding}:${q.queue}`).sort(),
      queueConsumers: (config.queues.consumers ?? []).map((q) => q.queue).sort(),
      r2: config.r2_buckets.map((r) => r.binding).sort(),
      kv: config.kv_namespaces.map((k) => k.binding).sort(),
      services: (config.services ?? []).map((s) => s.binding).sort(),
      vars: Object.keys(config.vars).sort(),
    });
    expect(names(production)).toEqual(names(top));
  });

  it("grants no sign-up credit unless an operator sets it, and has observability on", () => {
    expect(production.vars.SIGNUP_GRANT_MICROS).toBe("0");
    expect(production.vars.ENVIRONMENT).toBe("production");
    expect(production.observability?.enabled).toBe(true);
  });
});

describe("npm run deploy", () => {
  it("refuses a real deploy while the production database id is the placeholder, before migrating or uploading anything", () => {
    const run = spawnSync(process.execPath, ["scripts/deploy.mjs", "--env", "production"], { cwd: repoRoot, encoding: "utf8", env: { ...process.env, CLOUDFLARE_API_TOKEN: "" } });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/D1 database id of \[env\.production\] in wrangler\.toml is still the placeholder: run `npx wrangler d1 create llm-platform`/);
    expect(run.stdout).not.toContain("wrangler deploy");
  });
});
