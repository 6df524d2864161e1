// Runs in Node before the workerd tests: starts the deterministic fake GPU worker and hands
// its address to the tests (inject("fakeUpstream")).
import type { TestProject } from "vitest/node";
import { startFakeUpstream } from "../../support/fake-upstream";

declare module "vitest" {
  export interface ProvidedContext {
    fakeUpstream: { url: string; secret: string };
  }
}

export default async function setup(project: TestProject) {
  const upstream = await startFakeUpstream();
  project.provide("fakeUpstream", { url: upstream.url, secret: upstream.secret });
  return () => upstream.close();
}
