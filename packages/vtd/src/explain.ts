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
import { Fr, faultReasonName } from "./format/fault-record.ts";
import type { ConfigReader, ReadFault } from "./internal/config.ts";
import { ABORT_DMA, isReadFault, UNTRANSLATED_BEYOND_HAW } from "./internal/config.ts";
import type { Cfg } from "./walk.ts";
import { Kind, PageWalker, reduceBig } from "./walk.ts";

/** What explain needs of a unit (the fast path provides it). */
export interface ExplainUnit {
  /** GSTS.TES. */
  readonly enabled: boolean;
  /** 2^HAW: untranslated and pass-through addresses at or above it fault. */
  readonly hawLimit: number;
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
 * the outcome as the last step: `translation` with the PA as its address, or `fault`
 * with a note "fault 0x<reason>: <name>" ("fault: <what>" when the spec has no code).
 * The checks run in translate's order (fast-path.ts translateSlow, backend.ts
 * translateBig), so both always agree. The caller has refused misuse.
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
  const fault = (fr: number): WalkStep[] => {
    steps.push({ what: "fault", address: null, note: `fault 0x${fr.toString(16)}: ${faultReasonName(fr)}` });
    return steps;
  };
  if (!unit.enabled) {
    // GSTS.TES = 0 (spec 10.4.5): untranslated, but no PA reaches 2^HAW.
    if (big !== null || iova >= unit.hawLimit) {
      steps.push({ what: "fault", address: null, note: `fault: ${UNTRANSLATED_BEYOND_HAW}` });
      return steps;
    }
    steps.push({ what: "GSTS", address: iova, note: "translation disabled (TES = 0): untranslated" });
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
      if (r.fr !== ABORT_DMA) return fault(r.fr);
      steps.push({ what: "fault", address: null, note: "fault: abort-DMA mode (RTADDR.TTM = 11b)" });
      return steps;
    }
    const priv = pasid === NO_PASID ? r.ridPriv : (access & Access.PRIV) !== 0;
    // Supervisor requests need SRE before anything is walked (spec 9.6, 7.1.3 0x5D).
    if (priv && !r.sre && !r.legacy) return fault(Fr.SM_SRE_CLEAR);
    if (r.kind === Kind.PASS_THROUGH) {
      // Pass-through output is the input: at most HAW bits (spec 9.3, 9.6).
      if (big !== null || iova >= unit.hawLimit) return fault(r.legacy ? Fr.BEYOND_AGAW : Fr.SM_BEYOND_AGAW);
      steps.push({ what: "translation", address: iova, note: "pass-through" });
      return steps;
    }
    let addr = iova;
    let upper = false;
    if (big !== null) {
      const red = reduceBig(r, big);
      if (typeof red === "number") return fault(red);
      addr = red.addr;
      upper = red.upper;
      steps.push({
        what: "input",
        address: null,
        note: `walked as 0x${addr.toString(16)}${upper ? " (upper half)" : ""}`,
      });
    }
    const w = unit.walker;
    const fr = w.walk(r, addr, access, priv, upper);
    if (fr !== 0) return fault(fr);
    const perm = priv ? w.permSup : w.permUser;
    const pf = w.permissionFault(r, access, priv, perm);
    if (pf !== 0) return fault(pf);
    // The output may not be an interrupt address (spec 3.15), checked after the rights.
    if (PageWalker.inInterruptRange(w.pa))
      return fault(r.legacy ? Fr.INTERRUPT_RANGE : Fr.SM_INTERRUPT_RANGE);
    const pa = w.pa + (big === null ? 0 : Number(big % 4096n));
    steps.push({ what: "translation", address: pa, note: `pa 0x${pa.toString(16)} size 2^${w.sizeLg2}` });
    return steps;
  } finally {
    unit.reader.trace = null;
    unit.walker.trace = null;
    unit.walker.dryRun = false;
    unit.configs.restore(saved);
  }
}
