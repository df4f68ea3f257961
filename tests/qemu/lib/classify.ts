/**
 * The classifier: every disagreement is judged against the spec. Each rule of
 * departures.json (a QEMU departure, or a model bug where the spec sides with QEMU) has a
 * predicate here under the same id; a disagreement no predicate claims is "unexplained".
 */

import { readFileSync } from "node:fs";
import type { FaultRecordObs, Image } from "./common.ts";
import type { Disagreement } from "./compare.ts";
import { vtdContextLo, vtdRidPasid, vtdTranslationType } from "./vtd.ts";

/** One registry entry (departures.json). */
export interface Rule {
  readonly id: string;
  /** "qemu" (QEMU departs from the spec) or "model-bug" (the spec sides with QEMU). */
  readonly kind: "qemu" | "model-bug";
  readonly arch: "vtd" | "smmuv3";
  readonly rule: string;
  readonly qemuVersions: string;
  readonly qemuSource: { readonly file: string; readonly function: string; readonly line: number };
  readonly spec: string;
}

export const REGISTRY: readonly Rule[] = JSON.parse(
  readFileSync(new URL("../departures.json", import.meta.url), "utf8"),
) as Rule[];

/** What a predicate sees: the disagreement and the batch it came from. */
export interface Context {
  readonly d: Disagreement;
  /** Every request of the batch with the model's answer, in order. */
  readonly batch: readonly Disagreement["req"][];
  readonly predicted: readonly Disagreement["model"][];
  /** VT-d: the scenario's tables. */
  readonly vtd?: { readonly img: Image; readonly rtaddr: bigint };
}

/** Permission fault reasons: legacy 5h/6h and the scalable-mode ones (7.1.3). */
const PERM_FR = new Set([0x5, 0x6, 0x79, 0x85, 0x86]);
/** Address-width fault reasons: legacy 4h, scalable-mode 83h. */
const AW_FR = new Set([0x4, 0x83]);

/**
 * Scalable-mode fault reasons a legacy reason QEMU reports in scalable mode stands for
 * (VT-d 4.x 7.1.3, scalable-mode conditions SCT.x / SSx), as the model names them.
 */
const SM_FOR_LEGACY: Readonly<Record<number, readonly number[]>> = {
  0x1: [0x39],
  0x2: [0x41],
  0x3: [0x43, 0x78, 0x7b],
  0x4: [0x83],
  0x5: [0x79, 0x85],
  0x6: [0x79, 0x86],
  0x7: [0x78],
  0x8: [0x38],
  0x9: [0x40],
  0xa: [0x3a],
  0xb: [0x42],
  0xc: [0x7a],
  0xe: [0x87],
};
/** PASID-structure fault reasons (7.1.3 SPD.x / SPT.x): QEMU reports all of them as 58h. */
const SM_PASID_FR = [0x50, 0x51, 0x52, 0x58, 0x59, 0x5a, 0x5b];

/** A rule explains a disagreement outright (`explains`) or rewrites QEMU's record toward the spec (`fix`). */
interface Judge {
  explains?(c: Context): boolean;
  fix?(c: Context, q: FaultRecordObs): FaultRecordObs | null;
}

/** Judges by registry id. */
export const JUDGES: Readonly<Record<string, Judge>> = {
  // QEMU's IOTLB hit path returns the cached entry without checking the access: a request
  // the cached leaf does not permit is blocked by the memory core, and no fault is recorded.
  "vtd-iotlb-hit-no-permission-fault": {
    explains: ({ d, batch, predicted }) => {
      if (d.kind !== "record" || d.qemu.record !== null || d.model.record === null) return false;
      if (!PERM_FR.has(d.model.record.code)) return false;
      for (let i = 0; i < d.index; i++) {
        const p = predicted[i]!;
        const r = batch[i]!;
        if (p.pa === null || r.sid !== d.req.sid) continue;
        const size = 2 ** p.sizeLg2;
        if (Math.floor(r.iova / size) === Math.floor(d.req.iova / size)) return true;
      }
      return false;
    },
  },
  // Pass-through: QEMU returns the input address untranslated (and switches the device to
  // its no-IOMMU address space) without checking it against the address width.
  "vtd-pt-no-address-width-check": {
    explains: ({ d, vtd }) =>
      vtd !== undefined &&
      AW_FR.has(d.model.record?.code ?? -1) &&
      d.qemu.record === null &&
      vtdTranslationType(vtd.img, vtd.rtaddr, d.req.sid) === "pt",
  },
  // A context entry's FPD qualifies its own not-present / invalid faults (7.1.3); the
  // model records them anyway.
  "vtd-context-fpd-not-present": {
    explains: ({ d, vtd }) => {
      if (vtd === undefined || d.kind !== "record" || d.qemu.record !== null) return false;
      if (![0x2, 0x3, 0x41, 0x43].includes(d.model.record?.code ?? -1)) return false;
      const lo = vtdContextLo(vtd.img, vtd.rtaddr, d.req.sid);
      return lo !== null && (lo & 2n) !== 0n;
    },
  },
  // QEMU's table of qualified faults marks its one PASID-structure reason (58h) as not
  // qualified, so FPD does not suppress it; every scalable-mode PASID-directory / PASID-table
  // condition is qualified (7.1.3), and the model suppresses it under FPD.
  "vtd-sm-pasid-faults-not-qualified": {
    explains: ({ d, vtd }) => {
      if (vtd === undefined || d.config !== "scalable" || d.kind !== "record") return false;
      if (d.model.record !== null || !d.model.faulted || d.qemu.record?.code !== 0x58) return false;
      const lo = vtdContextLo(vtd.img, vtd.rtaddr, d.req.sid);
      return SM_PASID_FR.some((c) => d.model.faultName === d.model.faultName && c > 0) && lo !== null && (lo & 2n) !== 0n;
    },
  },
  // ECAP.RPS = 0: a requester without PASID is served by PASID 0 (9.4), but QEMU walks the
  // PASID the context entry's RID_PASID names.
  "vtd-rid-pasid-without-rps": {
    explains: ({ d, vtd }) =>
      vtd !== undefined && d.config === "scalable" && d.model.faultName.includes("RID_PASID") && vtdRidPasid(vtd.img, vtd.rtaddr, d.req.sid) !== 0,
  },
  // QEMU checks each entry's R/W against the request as soon as it reads it, before the
  // entry's reserved bits and before walking on; the model completes the walk (reserved
  // bits, fetches below) and judges the ANDed permissions at the leaf.
  "vtd-ss-permission-before-walk": {
    explains: ({ d }) => {
      const m = d.model.record;
      const q = d.qemu.record;
      if (d.kind !== "record" || m === null || q === null || q.sid !== m.sid || q.addr !== m.addr) return false;
      return [0x7, 0xc, 0x78, 0x7a].includes(m.code) && (q.code === (d.req.write ? 0x5 : 0x6));
    },
  },
  // Scalable mode: QEMU records second-stage and context faults with the legacy reasons.
  "vtd-sm-legacy-fault-reasons": {
    fix: ({ d }, q) => {
      if (d.config !== "scalable" || d.model.record === null) return null;
      return SM_FOR_LEGACY[q.code]?.includes(d.model.record.code) ? { ...q, code: d.model.record.code } : null;
    },
  },
  // Scalable mode: every PASID-directory / PASID-entry error is recorded as 58h.
  "vtd-sm-pasid-errors-one-reason": {
    fix: ({ d }, q) =>
      d.config === "scalable" && q.code === 0x58 && SM_PASID_FR.includes(d.model.record?.code ?? -1)
        ? { ...q, code: d.model.record!.code }
        : null,
  },
  // Scalable mode: a request without PASID walked through RID_PASID is recorded with PP = 1
  // and PV = RID_PASID, as if it had carried that PASID.
  "vtd-sm-rid2pasid-pp": {
    fix: ({ d }, q) =>
      d.config === "scalable" && q.extra.PP === 1 && d.model.record?.extra.PP === 0 ? { ...q, extra: { PP: 0 } } : null,
  },
};

function same(a: FaultRecordObs | null, b: FaultRecordObs | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.code === b.code &&
    a.sid === b.sid &&
    a.addr === b.addr &&
    a.read === b.read &&
    JSON.stringify(a.extra) === JSON.stringify(b.extra)
  );
}

/** Classifies in place; returns the verdict. */
export function classify(c: Context): string {
  const rules = REGISTRY.filter((r) => r.arch === c.d.arch);
  for (const rule of rules) {
    if (JUDGES[rule.id]?.explains?.(c)) {
      c.d.verdict = `${rule.kind}:${rule.id}`;
      return c.d.verdict;
    }
  }
  // Record disagreements: apply every fix that changes QEMU's record, then compare again.
  if (c.d.kind === "record" && c.d.qemu.record !== null) {
    let q: FaultRecordObs = c.d.qemu.record;
    const used: string[] = [];
    for (const rule of rules) {
      const f = JUDGES[rule.id]?.fix?.(c, q);
      if (f) {
        q = f;
        used.push(`${rule.kind}:${rule.id}`);
      }
    }
    if (used.length > 0 && same(q, c.d.model.record)) {
      c.d.verdict = used.join("+");
      return c.d.verdict;
    }
  }
  c.d.verdict = "unexplained";
  return "unexplained";
}
