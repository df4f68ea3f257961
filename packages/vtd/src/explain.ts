/**
 * Explain: one request's walk, step by step, as the CLI's `explain` prints it (what
 * the hardware reads: root / context entries, PASID directory and table entries,
 * then each paging entry, spec 3.4-3.8 and 9.1-9.9), with the fault reason of
 * spec 7.1.3 where it stops. Levels are named as generic_pt/fmt/vtdss.h does
 * (PTE = level 0, PDE = 1, PDPE = 2, PML4E = 3, PML5E = 4). Off the hot path.
 */

import type { WalkStep } from "@iommu-kit/core";
import { Access, NO_PASID } from "@iommu-kit/core";
import type { ConfigCaches } from "./config-cache.ts";
import { faultReasonName } from "./format/fault-record.ts";
import type { ConfigReader, ReadFault } from "./internal/config.ts";
import { isReadFault } from "./internal/config.ts";
import type { Cfg, PageWalker } from "./walk.ts";
import { Kind, reduceBig } from "./walk.ts";

/** What explain needs of a unit (the fast path provides it). */
export interface ExplainUnit {
  /** GSTS.TES. */
  readonly enabled: boolean;
  readonly reader: ConfigReader;
  readonly walker: PageWalker;
  readonly configs: ConfigCaches;
  /** Resolves (sid, pasid) through the configuration caches, reading tables on a miss. */
  resolve(sid: number, pasid: number): Cfg | ReadFault;
}

/**
 * The walk of one request, step by step, without caches and without recording: the
 * unit's configuration caches are emptied for the walk (so every table read shows)
 * and put back afterwards; the walker runs dry (no A/D writes). Returns the steps and
 * the outcome as the last step.
 */
export function explainWalk(
  unit: ExplainUnit,
  sid: number,
  pasid: number,
  iova: number,
  access: number,
  big: bigint | null = null,
): WalkStep[] {
  const steps: WalkStep[] = [];
  if (!unit.enabled) {
    steps.push({ what: "GSTS", address: null, note: "translation disabled (TES = 0): untranslated" });
    return steps;
  }
  const saved = unit.configs.save();
  unit.reader.trace = steps;
  unit.walker.trace = steps;
  unit.walker.dryRun = true;
  try {
    unit.configs.contextCache.clear();
    unit.configs.pasidCache.clear();
    const r = unit.resolve(sid, pasid);
    if (isReadFault(r)) {
      steps.push({
        what: "fault",
        address: null,
        note: `fault 0x${r.fr.toString(16)}: ${faultReasonName(r.fr)}`,
      });
      return steps;
    }
    if (r.kind === Kind.PASS_THROUGH) {
      steps.push({ what: "translation", address: null, note: "pass-through" });
      return steps;
    }
    const priv = pasid === NO_PASID ? r.ridPriv : (access & Access.PRIV) !== 0;
    let addr = iova;
    let upper = false;
    if (big !== null) {
      const red = reduceBig(r, big);
      if (typeof red === "number") {
        steps.push({
          what: "fault",
          address: null,
          note: `fault 0x${red.toString(16)}: ${faultReasonName(red)}`,
        });
        return steps;
      }
      addr = red.addr;
      upper = red.upper;
      steps.push({
        what: "input",
        address: null,
        note: `walked as 0x${addr.toString(16)}${upper ? " (upper half)" : ""}`,
      });
    }
    const fr = unit.walker.walk(r, addr, access, priv, upper);
    if (fr !== 0) {
      steps.push({
        what: "fault",
        address: null,
        note: `fault 0x${fr.toString(16)}: ${faultReasonName(fr)}`,
      });
      return steps;
    }
    const perm = priv ? unit.walker.permSup : unit.walker.permUser;
    const pf = unit.walker.permissionFault(r, access, priv, perm);
    const pa = unit.walker.pa + (big === null ? 0 : Number(big % 4096n));
    steps.push({
      what: "translation",
      address: pa,
      note:
        pf === 0
          ? `pa 0x${pa.toString(16)} size 2^${unit.walker.sizeLg2}`
          : `fault 0x${pf.toString(16)}: ${faultReasonName(pf)}`,
    });
    return steps;
  } finally {
    unit.reader.trace = null;
    unit.walker.trace = null;
    unit.walker.dryRun = false;
    unit.configs.restore(saved);
  }
}
