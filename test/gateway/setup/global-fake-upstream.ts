// Runs in Node before the workerd tests: starts the deterministic fake GPU worker and hands
// its address to the tests (inject("fakeUpstream")).
import type { TestProject } from "vitest/node";
import { startBadWorker } from "../../support/fake-bad-workers";
import { startFakeTurnstile } from "../../support/fake-turnstile";
import { startFakeUpstream } from "../../support/fake-upstream";

declare module "vitest" {
  export interface ProvidedContext {
    fakeUpstream: { url: string; secret: string };
    badWorkers: { edge: string; hole: string; sick: string; draining: string };
    turnstileVerifyUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const upstream = await startFakeUpstream();
  project.provide("fakeUpstream", { url: upstream.url, secret: upstream.secret });
  const [edge, hole, sick, draining] = await Promise.all((["edge", "hole", "sick", "draining"] as const).map(startBadWorker));
  project.provide("badWorkers", { edge: edge!.url, hole: hole!.url, sick: sick!.url, draining: draining!.url });
  const turnstile = await startFakeTurnstile();
  project.provide("turnstileVerifyUrl", turnstile.url);
  return () => Promise.all([upstream, edge!, hole!, sick!, draining!, turnstile].map((s) => s.close()));
}
