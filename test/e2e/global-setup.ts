// Starts the store as `npm start` does for the whole e2e project and hands its URL to the tests.
import type { TestProject } from "vitest/node";
import { startStore } from "./store.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const store = await startStore();
  project.provide("baseUrl", store.baseUrl);
  return store.stop;
}
