/**
 * The classifier: every disagreement is judged against the spec. Each rule of
 * departures.json (a QEMU departure, or a model bug where the spec sides with QEMU) has a
 * predicate here under the same id; a disagreement no predicate claims is "unexplained".
 */

import { readFileSync } from "node:fs";
import type { FaultRecordObs, Image } from "./common.ts";
import { get64 } from "./common.ts";
import type { Disagreement } from "./compare.ts";
import { ARM } from "./smmu.ts";
import { vtdContextLo, vtdRidPasid, vtdSsLeaf, vtdTranslationType } from "./vtd.ts";

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
  /**
   * A model bug that has been fixed: its judge no longer explains anything, so the same
   * disagreement coming back is reported as unexplained (a regression).
   */
  readonly fixed?: string;
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
  /** SMMUv3: the scenario's tables and stream-table registers. */
  readonly smmu?: {
    readonly img: Image;
    readonly strtabBase: bigint;
    readonly strtabCfg: number;
    readonly cds: ReadonlyMap<number, number>;
  };
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
  1: [0x39],
  2: [0x41],
  3: [0x43, 0x78, 0x7b],
  4: [0x83],
  5: [0x79, 0x85],
  6: [0x79, 0x86],
  7: [0x78],
  8: [0x38],
  9: [0x40],
  10: [0x3a],
  11: [0x42],
  12: [0x7a],
  14: [0x87],
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
      if (vtd === undefined || d.config !== "vtd-scalable" || d.kind !== "record") return false;
      if (d.model.record !== null || !d.model.faulted || d.qemu.record?.code !== 0x58) return false;
      const lo = vtdContextLo(vtd.img, vtd.rtaddr, d.req.sid);
      return /PASID/.test(d.model.faultName) && lo !== null && (lo & 2n) !== 0n;
    },
  },
  // Model bug: TM (bit 62) of a second-stage leaf is reserved while ECAP.DT = 0; QEMU
  // faults it (Ch, legacy reason in scalable mode too), the model translates.
  "vtd-ss-tm-without-dt": {
    explains: ({ d, vtd }) => {
      if (vtd === undefined || d.model.pa === null) return false;
      const q = d.qemu.record;
      if (q !== null && q.code !== 0xc && q.code !== 0x7a) return false;
      const leaf = vtdSsLeaf(vtd.img, vtd.rtaddr, d.req.sid, d.req.iova);
      return leaf !== null && (leaf >> 62n) % 2n === 1n;
    },
  },
  // Model bug: in scalable mode bit 11 of a second-stage leaf (legacy SNP) is ignored,
  // snooping being the PASID entry's PGSNP; the model faults it as reserved (7Ah).
  "vtd-sm-ss-snp-reserved": {
    explains: ({ d, vtd }) => {
      if (vtd === undefined || d.config !== "vtd-scalable") return false;
      // Recorded (7Ah) or suppressed by FPD: the model's fault is the reserved-field one.
      if (d.model.record?.code !== 0x7a && !/reserved field set in second-level/.test(d.model.faultName))
        return false;
      if (d.qemu.record !== null) return false;
      const leaf = vtdSsLeaf(vtd.img, vtd.rtaddr, d.req.sid, d.req.iova);
      return leaf !== null && (leaf & 0x800n) !== 0n;
    },
  },
  // QEMU never checks the reserved bits of PASID-directory and PASID-table entries: it goes
  // on with the walk (any outcome) where the spec faults 52h / 5Ah.
  "vtd-sm-pasid-reserved-unchecked": {
    explains: ({ d }) =>
      d.config === "vtd-scalable" &&
      (d.model.record?.code === 0x52 ||
        d.model.record?.code === 0x5a ||
        /reserved field set in PASID/.test(d.model.faultName)) &&
      (d.qemu.record === null || d.qemu.record.code !== d.model.record?.code),
  },
  // ECAP.RPS = 0: a requester without PASID is served by PASID 0 (9.4), but QEMU walks the
  // PASID the context entry's RID_PASID names.
  "vtd-rid-pasid-without-rps": {
    explains: ({ d, vtd }) =>
      vtd !== undefined &&
      d.config === "vtd-scalable" &&
      d.model.faultName.includes("RID_PASID") &&
      vtdRidPasid(vtd.img, vtd.rtaddr, d.req.sid) !== 0,
  },
  // QEMU checks each entry's R/W against the request as soon as it reads it, before the
  // entry's reserved bits and before walking on; the model completes the walk (reserved
  // bits, fetches below) and judges the ANDed permissions at the leaf.
  "vtd-ss-permission-before-walk": {
    explains: ({ d }) => {
      const m = d.model.record;
      const q = d.qemu.record;
      if (d.kind !== "record" || m === null || q === null || q.sid !== m.sid || q.addr !== m.addr)
        return false;
      return [0x7, 0xc, 0x78, 0x7a].includes(m.code) && q.code === (d.req.write ? 0x5 : 0x6);
    },
  },
  // Scalable mode: QEMU records second-stage and context faults with the legacy reasons.
  "vtd-sm-legacy-fault-reasons": {
    fix: ({ d }, q) => {
      if (d.config !== "vtd-scalable" || d.model.record === null) return null;
      return SM_FOR_LEGACY[q.code]?.includes(d.model.record.code)
        ? { ...q, code: d.model.record.code }
        : null;
    },
  },
  // Scalable mode: every PASID-directory / PASID-entry error is recorded as 58h.
  "vtd-sm-pasid-errors-one-reason": {
    fix: ({ d }, q) =>
      d.config === "vtd-scalable" && q.code === 0x58 && SM_PASID_FR.includes(d.model.record?.code ?? -1)
        ? { ...q, code: d.model.record!.code }
        : null,
  },
  // Scalable mode: a request without PASID walked through RID_PASID is recorded with PP = 1
  // and PV = RID_PASID, as if it had carried that PASID.
  "vtd-sm-rid2pasid-pp": {
    fix: ({ d }, q) =>
      d.config === "vtd-scalable" && q.extra.PP === 1 && d.model.record?.extra.PP === 0
        ? { ...q, extra: { PP: 0 } }
        : null,
  },
  // SMMUv3 --------------------------------------------------------------------------
  // QEMU treats every transaction as privileged (is_permission_fault looks at AP[2] only):
  // an unprivileged access to an EL1-only page (AP[1] = 0) goes through.
  "smmu-all-privileged": {
    explains: ({ d }) => {
      const p = d.model.privPa;
      if (d.arch !== "smmuv3" || d.model.pa !== null || p === undefined || p === null) return false;
      if (d.model.faultName !== "F_PERMISSION" || d.qemu.record !== null) return false;
      if (d.req.write) return d.qemu.landed?.length === 1 && d.qemu.landed[0] === p;
      return d.privExpected === "unknown" || d.qemu.data === d.privExpected;
    },
  },
  // QEMU's IOTLB entry keeps the leaf's AP only: a write under APTable[1] = 1 that hits an
  // entry a read cached goes through.
  "smmu-iotlb-drops-aptable": {
    explains: ({ d, batch, predicted }) => {
      if (d.arch !== "smmuv3" || !d.req.write || d.model.faultName !== "F_PERMISSION") return false;
      if (d.qemu.record !== null || d.qemu.landed === undefined) return false;
      const landed = d.qemu.landed;
      for (let i = 0; i < d.index; i++) {
        const p = predicted[i]!;
        const r = batch[i]!;
        // QEMU cached what it translated: the model's answer, or (QEMU treating every
        // access as privileged) the model's privileged answer.
        const pa = p.pa ?? p.privPa ?? null;
        if (pa === null || r.sid !== d.req.sid) continue;
        const size = 2 ** (p.pa !== null ? p.sizeLg2 : (p.privSizeLg2 ?? 12));
        if (Math.floor(r.iova / size) !== Math.floor(d.req.iova / size)) continue;
        const at = pa - (r.iova % size) + (d.req.iova % size);
        // Outside the data pool the write is not seen (it may reach no RAM at all).
        return at >= ARM.pool && at < ARM.pool + ARM.poolSize
          ? landed.length === 1 && landed[0] === at
          : landed.length === 0;
      }
      return false;
    },
  },
  // No address-size checks: a bypassed input address at or above IAS, and output or table
  // addresses at or above the CD's IPS / OAS, are used as they are (smmu_ptw_64, bypass).
  "smmu-no-address-size-check": {
    explains: ({ d }) => {
      if (d.arch !== "smmuv3") return false;
      // QEMU goes on with the walk or the access: whatever follows (a fetch abort, the
      // translation or permission fault of the walk, or an access to non-RAM) is its answer.
      const q = d.qemu.record;
      const later = q === null || [0x0b, 0x10, 0x13].includes(q.code);
      if (d.model.faultName === "F_ADDR_SIZE") return later;
      // A fault the model gives only because the request is unprivileged, where the
      // privileged request is an address-size fault: QEMU accessed non-RAM, silently.
      return (
        d.model.privFault === "F_ADDR_SIZE" &&
        q === null &&
        (d.qemu.landed ?? []).length === 0 &&
        (d.qemu.data ?? 0n) === 0n
      );
    },
  },
  // 2-level stream table: QEMU takes an L2 table to hold 2^Span STEs (the spec: 2^(Span-1))
  // and faults an index beyond it with C_BAD_STE (the spec: C_BAD_STREAMID, recorded only
  // with CR2.RECINVSID).
  "smmu-l2-span": {
    explains: ({ d, smmu }) => {
      if (d.arch !== "smmuv3" || smmu === undefined || d.model.faultName !== "C_BAD_STREAMID") return false;
      const cfg = smmu.strtabCfg;
      if (((cfg >> 16) & 3) !== 1) return false;
      const split = (cfg >> 6) & 0x1f;
      const l1 = get64(smmu.img, Number(smmu.strtabBase) + (d.req.sid >> split) * 8);
      const span = Number(l1 & 0x1fn);
      const idx = d.req.sid & (2 ** split - 1);
      if (span === 0 || span > 11) return false;
      // QEMU: inside 2^Span - 1 it reads the STE (any outcome); beyond it, C_BAD_STE.
      if (idx >= 2 ** span) return d.qemu.record?.code === 0x04;
      return idx >= 2 ** (span - 1);
    },
  },
  // L1STD.L2Ptr is bits [51:6]; QEMU takes the whole upper word, RES0 bits [63:52] too,
  // and fetches the STE from beyond the address space (F_STE_FETCH).
  "smmu-l1std-ptr-high-bits": {
    explains: ({ d, smmu }) => {
      if (d.arch !== "smmuv3" || smmu === undefined || d.qemu.record?.code !== 0x03) return false;
      const cfg = smmu.strtabCfg;
      if (((cfg >> 16) & 3) !== 1) return false;
      const l1 = get64(smmu.img, Number(smmu.strtabBase) + (d.req.sid >> ((cfg >> 6) & 0x1f)) * 8);
      return l1 >> 52n !== 0n && BigInt(d.qemu.record.extra.FetchAddr ?? 0) >> 52n !== 0n;
    },
  },
  // Model bug: STRTAB_BASE.ADDR is used as written; the effective base is aligned to the
  // table size (a linear table of 2^LOG2SIZE STEs: 2^(LOG2SIZE + 6) bytes), as QEMU does.
  "smmu-strtab-base-unaligned": {
    explains: ({ d, smmu }) => {
      if (d.arch !== "smmuv3" || smmu === undefined || ((smmu.strtabCfg >> 16) & 3) !== 0) return false;
      if (sameCode(d)) return false;
      return smmu.strtabBase % 2n ** BigInt((smmu.strtabCfg & 0x3f) + 6) !== 0n;
    },
  },
  // Model bug: CD.TTB0 is taken as 64-byte aligned although the start-level table is smaller
  // (T0SZ 32 / 33 with the 4 KiB granule: 32 / 16 bytes) and IPS < 52; QEMU keeps TTB0's bits
  // down to the table's size.
  "smmu-cd-ttb0-small-table": {
    explains: ({ d, smmu }) => {
      const cd = smmu?.cds.get(d.req.sid);
      if (d.arch !== "smmuv3" || smmu === undefined || cd === undefined || sameCode(d)) return false;
      const t0sz = Number(get64(smmu.img, cd) & 0x3fn);
      const ttb0 = get64(smmu.img, cd + 8) & 0x000f_ffff_ffff_fff0n;
      return (t0sz === 32 || t0sz === 33) && (ttb0 & 0x30n) !== 0n;
    },
  },
  // The access flag is not checked: AF = 0 with CD.AFFD = 0 translates instead of F_ACCESS.
  "smmu-af-ignored": {
    explains: ({ d }) => d.arch === "smmuv3" && d.model.faultName === "F_ACCESS" && d.qemu.record === null,
  },
  // QEMU checks APTable while walking (smmu_ptw_64) and reports F_PERMISSION at the table
  // entry; the walk's own outcome (a translation fault further down) comes first.
  "smmu-aptable-before-walk": {
    explains: ({ d }) =>
      d.arch === "smmuv3" &&
      d.kind === "record" &&
      d.req.write &&
      (d.model.record?.code === 0x10 || d.model.record?.code === 0x0b) &&
      d.qemu.record?.code === 0x13 &&
      d.qemu.record.addr === d.model.record.addr,
  },
  // Stage-1 translation-class events carry CLASS = CD (QEMU never sets CLASS but for
  // F_WALK_EABT); a stage-1 fault on the input address is CLASS = IN.
  "smmu-s1-event-class-cd": {
    fix: ({ d }, q) =>
      d.arch === "smmuv3" && q.extra.CLASS === "CD" && d.model.record?.extra.CLASS === "IN"
        ? { ...q, extra: { ...q.extra, CLASS: "IN" } }
        : null,
  },
};

/** Both recorded the same event type: what differs is a field, left to the record fixes. */
function sameCode(d: Disagreement): boolean {
  return d.kind === "record" && d.qemu.record !== null && d.qemu.record.code === d.model.record?.code;
}

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
  const rules = REGISTRY.filter((r) => r.arch === c.d.arch && r.fixed === undefined);
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
