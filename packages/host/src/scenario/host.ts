/**
 * Builds the host a scenario runs on (placeholder until the Host facade lands).
 */

import type { Backend } from "@iommu-kit/core";
import type { HostAdapter } from "./host-adapter.ts";
import type { Scenario } from "./load.ts";

/** A host adapter plus what explain/dump need. */
export interface ScenarioHost extends HostAdapter {
  backendOf(device: string): { backend: Backend; rid: number };
}

/** Creates the host for a scenario. */
export async function createScenarioHost(_s: Scenario): Promise<ScenarioHost> {
  throw new Error("the Host facade is not available yet");
}
