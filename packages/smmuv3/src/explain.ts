/**
 * Walk narration: what `explain()` and `describe()` collect while the hardware model
 * runs a request with its caches bypassed (the steps of ARM IHI 0070 3.3 stream table
 * and CD lookup, 3.4 translation, and the walk levels of the Arm ARM VMSAv8-64 tables).
 * The configuration and walk rooms call `step()` at each structure they fetch; it costs
 * one null test when nobody listens, and while someone does, the rooms also skip every
 * side effect (HTTU access/dirty updates, cache fills, event records). Step names use
 * the spec's level numbers as they are: "S1 L0".."S1 L3" and "S2 L0".."S2 L3" are
 * lookup levels 0-3 of DDI 0487 D8.2 (level 0 holds the largest blocks), the same
 * numbers `walk.ts` iterates over.
 */

import type { Translation, WalkStep } from "@iommu-kit/core";
import { hex } from "./internal/words.ts";

/** Collects walk steps while `steps` is set; does nothing otherwise. */
export class Narrator {
  /** The steps being collected, or null when nobody is explaining. */
  steps: WalkStep[] | null = null;

  /** Appends one step (ignored unless collecting). */
  step(
    what: string,
    address: number | null,
    note: string,
    raw?: readonly string[],
    fields?: Record<string, string | number | boolean>,
  ): void {
    if (this.steps === null) return;
    this.steps.push({
      what,
      address,
      note,
      ...(raw === undefined ? {} : { raw }),
      ...(fields === undefined ? {} : { fields }),
    });
  }
}

/** The closing "result" step of an explained request. */
export function resultStep(ok: boolean, out: Translation): WalkStep {
  return {
    what: "result",
    address: ok ? out.pa : null,
    note: ok
      ? `pa ${hex(out.pa)} perm ${out.perm} size 2^${out.sizeLg2}`
      : `fault: ${out.fault?.vendor.name} (${out.fault?.class})`,
  };
}
