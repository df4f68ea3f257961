/**
 * Reads and checks the configuration structures of one request: root entry, context
 * entry, and in scalable mode the PASID directory and PASID table entries (Intel
 * VT-d spec 3.4-3.5, 9.1-9.6), with the fault reasons of spec 7.1.3. Off the hot
 * path: it runs on a context/PASID cache miss and uses the bigint codecs.
 */

import type { PhysicalMemory, WalkStep } from "@iommu-kit/core";
import { decodeContextEntry, decodeScalableContextEntry, Tt } from "../format/context-entry.ts";
import { Fr } from "../format/fault-record.ts";
import { decodePasidDirEntry, decodePasidEntry, Pgtt } from "../format/pasid-entry.ts";
import type { CapFields, EcapFields } from "../format/registers.ts";
import { decodeRootEntry, decodeScalableRootEntry } from "../format/root-entry.ts";
import type { Cfg } from "../walk.ts";
import { Kind } from "../walk.ts";
import { hex64, readWords } from "./words.ts";

/** A context entry as the context cache holds it (valid entries only). */
export interface CtxInfo {
  readonly sid: number;
  readonly legacy: boolean;
  readonly fpd: boolean;
  // Legacy.
  readonly tt: number;
  readonly slptptr: number;
  readonly aw: number;
  readonly did: number;
  // Scalable.
  readonly paside: boolean;
  readonly pdts: number;
  readonly pasidDirPtr: number;
  readonly ridPasid: number;
  readonly ridPriv: boolean;
  /** PRE (scalable): page requests from the device are accepted (prq.ts). False in legacy mode. */
  readonly pre: boolean;
}

/** A PASID table entry as the PASID cache holds it (valid entries only). */
export interface PasidInfo {
  readonly sid: number;
  readonly pasid: number;
  readonly did: number;
  /** FPD of the directory entry or the PASID entry (the context's FPD is added per configuration). */
  readonly fpd: boolean;
  readonly pgtt: number;
  readonly aw: number;
  readonly ssee: boolean;
  readonly ssade: boolean;
  readonly ssptptr: number;
  readonly pwsnp: boolean;
  readonly sre: boolean;
  readonly fspm: number;
  readonly wpe: boolean;
  readonly eafe: boolean;
  readonly fsptptr: number;
}

/** A pseudo fault reason for abort-DMA mode (RTADDR.TTM = 11b, spec 10.4.6): no spec code, nothing recorded. */
export const ABORT_DMA = -1;
/** The name of the fault of an untranslated (TES = 0) address at or above 2^HAW (no spec code). */
export const UNTRANSLATED_BEYOND_HAW = "untranslated address beyond the host address width";

/** Outcome of a read: an entry, or a fault reason and whether FPD suppresses it. */
export interface ReadFault {
  readonly fr: number;
  /** True when an entry read before the fault had FPD set (a qualified fault). */
  readonly fpd: boolean;
}

/** Reader of configuration structures over one memory, for one unit's capabilities. */
export class ConfigReader {
  readonly memory: PhysicalMemory;
  readonly cap: CapFields;
  readonly ecap: EcapFields;
  readonly haw: number;
  /** Trace for explain (null normally). */
  trace: WalkStep[] | null = null;

  constructor(memory: PhysicalMemory, cap: CapFields, ecap: EcapFields, haw: number) {
    this.memory = memory;
    this.cap = cap;
    this.ecap = ecap;
    this.haw = haw;
  }

  #aboveHaw(pa: number): boolean {
    return pa >= 2 ** this.haw;
  }

  #step(what: string, address: number | null, words: readonly bigint[] | null, note: string): void {
    if (this.trace === null) return;
    this.trace.push(
      words === null ? { what, address, note } : { what, address, raw: words.map((w) => hex64(w)), note },
    );
  }

  /** Reads the context entry of `sid` under root table `rta` in the given mode. */
  readContext(rta: number, scalable: boolean, sid: number): CtxInfo | ReadFault {
    const bus = sid >>> 8;
    const devfn = sid & 0xff;
    const rootPa = rta + bus * 16;
    const root = readWords(this.memory, rootPa, 2);
    if (!scalable) {
      if (root === null) return this.#fault("root entry", rootPa, Fr.ROOT_FETCH, false);
      const r = decodeRootEntry(root);
      this.#step("root entry", rootPa, root, r.present ? `context table ${hexN(r.ctp)}` : "not present");
      if (!r.present) return { fr: Fr.ROOT_NOT_PRESENT, fpd: false };
      if (r.reserved || this.#aboveHaw(r.ctp)) return { fr: Fr.ROOT_RESERVED, fpd: false };
      const ctxPa = r.ctp + devfn * 16;
      const cw = readWords(this.memory, ctxPa, 2);
      if (cw === null) return this.#fault("context entry", ctxPa, Fr.CONTEXT_FETCH, false);
      const c = decodeContextEntry(cw);
      this.#step(
        "context entry",
        ctxPa,
        cw,
        c.present ? `TT ${c.tt} AW ${c.aw} DID ${c.did} SLPTPTR ${hexN(c.slptptr)}` : "not present",
      );
      // FPD is evaluated whatever P says (spec 9.3): the entry's own faults are qualified (7.1.3).
      if (!c.present) return { fr: Fr.CONTEXT_NOT_PRESENT, fpd: c.fpd };
      // SLPTPTR is ignored for pass-through (spec 9.3).
      if (c.reserved || (c.tt !== Tt.PASS_THROUGH && this.#aboveHaw(c.slptptr)))
        return { fr: Fr.CONTEXT_RESERVED, fpd: c.fpd };
      const ttOk =
        c.tt === Tt.TRANSLATE ||
        (c.tt === Tt.DEVICE_TLB && this.ecap.dt) ||
        (c.tt === Tt.PASS_THROUGH && this.ecap.pt);
      // AW must name a supported AGAW for translating types (spec 9.3).
      const awOk =
        c.tt === Tt.PASS_THROUGH || (c.aw >= 1 && c.aw <= 3 && (this.cap.sagaw & (1 << c.aw)) !== 0);
      if (!ttOk || !awOk) return { fr: Fr.CONTEXT_INVALID, fpd: c.fpd };
      return {
        sid,
        legacy: true,
        fpd: c.fpd,
        tt: c.tt,
        slptptr: c.slptptr,
        aw: c.aw,
        did: c.did,
        paside: false,
        pdts: 0,
        pasidDirPtr: 0,
        ridPasid: 0,
        ridPriv: false,
        pre: false,
      };
    }
    if (root === null) return this.#fault("root entry", rootPa, Fr.SM_ROOT_FETCH, false);
    const r = decodeScalableRootEntry(root);
    const upper = devfn >= 128;
    const present = upper ? r.upperPresent : r.lowerPresent;
    const ctp = upper ? r.upperCtp : r.lowerCtp;
    this.#step(
      "root entry",
      rootPa,
      root,
      present ? `${upper ? "upper" : "lower"} context table ${hexN(ctp)}` : "not present",
    );
    if (!present) return { fr: Fr.SM_ROOT_NOT_PRESENT, fpd: false };
    if (r.reserved || this.#aboveHaw(ctp)) return { fr: Fr.SM_ROOT_RESERVED, fpd: false };
    const ctxPa = ctp + (devfn & 0x7f) * 32;
    const cw = readWords(this.memory, ctxPa, 4);
    if (cw === null) return this.#fault("context entry", ctxPa, Fr.SM_CONTEXT_FETCH, false);
    const c = decodeScalableContextEntry(cw);
    this.#step(
      "context entry",
      ctxPa,
      cw,
      c.present
        ? `PASIDDIRPTR ${hexN(c.pasidDirPtr)} PDTS ${c.pdts} RID_PASID ${c.ridPasid}${c.paside ? " PASIDE" : ""}`
        : "not present",
    );
    // FPD is evaluated whatever P says (spec 9.4): the entry's own faults are qualified (7.1.3).
    if (!c.present) return { fr: Fr.SM_CONTEXT_NOT_PRESENT, fpd: c.fpd };
    if (c.reserved || this.#aboveHaw(c.pasidDirPtr)) return { fr: Fr.SM_CONTEXT_RESERVED, fpd: c.fpd };
    return {
      sid,
      legacy: false,
      fpd: c.fpd,
      tt: 0,
      slptptr: 0,
      aw: 0,
      did: 0,
      paside: c.paside,
      pdts: c.pdts,
      pasidDirPtr: c.pasidDirPtr,
      ridPasid: c.ridPasid,
      ridPriv: c.ridPriv,
      pre: c.pre,
    };
  }

  #fault(what: string, pa: number, fr: number, fpd: boolean): ReadFault {
    this.#step(what, pa, null, "bus error");
    return { fr, fpd };
  }

  /**
   * Checks a request against a scalable context entry and returns the PASID to walk,
   * or a fault. `pasid` is the request's PASID or -1.
   */
  walkPasid(ctx: CtxInfo, pasid: number): number | ReadFault {
    if (pasid >= 0 && !ctx.paside) return { fr: Fr.SM_PASIDE_CLEAR, fpd: ctx.fpd };
    const eff = pasid >= 0 ? pasid : ctx.ridPasid;
    const dirEntries = 2 ** (ctx.pdts + 7);
    if (pasid < 0 && ((!this.ecap.rps && eff !== 0) || eff >>> 6 >= dirEntries)) {
      return { fr: Fr.SM_RID_PASID_ERROR, fpd: ctx.fpd };
    }
    if (eff >>> 6 >= dirEntries) return { fr: Fr.SM_PASID_TOO_LARGE, fpd: ctx.fpd };
    return eff;
  }

  /** Reads the PASID directory and table entries of `pasid` (already checked against PDTS). */
  readPasid(ctx: CtxInfo, pasid: number): PasidInfo | ReadFault {
    const dirPa = ctx.pasidDirPtr + (pasid >>> 6) * 8;
    const dw = readWords(this.memory, dirPa, 1);
    if (dw === null) return this.#fault("PASID directory entry", dirPa, Fr.SM_PASID_DIR_FETCH, ctx.fpd);
    const d = decodePasidDirEntry(dw[0]!);
    this.#step(
      "PASID directory entry",
      dirPa,
      dw,
      d.present ? `PASID table ${hexN(d.tablePtr)}` : "not present",
    );
    // A directory entry's FPD qualifies its own faults too, present or not (spec 9.5).
    const fpd = ctx.fpd || d.fpd;
    if (!d.present) return { fr: Fr.SM_PASID_DIR_NOT_PRESENT, fpd };
    if (d.reserved || this.#aboveHaw(d.tablePtr)) return { fr: Fr.SM_PASID_DIR_RESERVED, fpd };
    const pePa = d.tablePtr + (pasid & 0x3f) * 64;
    const pw = readWords(this.memory, pePa, 8);
    if (pw === null) return this.#fault("PASID table entry", pePa, Fr.SM_PASID_FETCH, fpd);
    const e = decodePasidEntry(pw);
    this.#step(
      "PASID table entry",
      pePa,
      pw,
      e.present ? `PGTT ${e.pgtt} DID ${e.did} AW ${e.aw} FSPM ${e.fspm}` : "not present",
    );
    // And a PASID entry's FPD its own (spec 9.6).
    const all = fpd || e.fpd;
    if (!e.present) return { fr: Fr.SM_PASID_NOT_PRESENT, fpd: all };
    if (e.reserved || (e.ssade && !this.ecap.ssads)) return { fr: Fr.SM_PASID_RESERVED, fpd: all };
    const usesSs = e.pgtt === Pgtt.SECOND_STAGE || e.pgtt === Pgtt.NESTED;
    const usesFs = e.pgtt === Pgtt.FIRST_STAGE || e.pgtt === Pgtt.NESTED;
    const pgttOk =
      (e.pgtt === Pgtt.FIRST_STAGE && this.ecap.fsts) ||
      (e.pgtt === Pgtt.SECOND_STAGE && this.ecap.ssts) ||
      (e.pgtt === Pgtt.NESTED && this.ecap.nest && this.ecap.fsts && this.ecap.ssts) ||
      (e.pgtt === Pgtt.PASS_THROUGH && this.ecap.pt);
    const awOk = !usesSs || (e.aw >= 1 && e.aw <= 3 && (this.cap.sagaw & (1 << e.aw)) !== 0);
    const fspmOk = !usesFs || e.fspm === 0 || (e.fspm === 1 && this.cap.fs5lp);
    if (!pgttOk || !awOk || !fspmOk) return { fr: Fr.SM_PASID_INVALID, fpd: all };
    if (usesSs && this.#aboveHaw(e.ssptptr)) return { fr: Fr.SS_ROOT_INVALID, fpd: all };
    if (usesFs && this.#aboveHaw(e.fsptptr)) return { fr: Fr.FS_ROOT_INVALID, fpd: all };
    return {
      sid: ctx.sid,
      pasid,
      did: e.did,
      fpd: d.fpd || e.fpd,
      pgtt: e.pgtt,
      aw: e.aw,
      ssee: e.ssee,
      ssade: e.ssade,
      ssptptr: e.ssptptr,
      pwsnp: e.pwsnp,
      sre: e.sre,
      fspm: e.fspm,
      wpe: e.wpe,
      eafe: e.eafe,
      fsptptr: e.fsptptr,
    };
  }
}

/** True when a read returned a fault. */
export function isReadFault<T extends object>(v: T | ReadFault): v is ReadFault {
  return "fr" in v;
}

/** The IOTLB tag of (DID, PASID). */
export function tagOf(did: number, pasid: number): number {
  return did * 1048576 + pasid;
}

/** A legacy configuration from a context entry. */
export function legacyCfg(c: CtxInfo): Cfg {
  return {
    sid: c.sid,
    pasid: 0,
    did: c.did,
    tag: tagOf(c.did, 0),
    kind: c.tt === Tt.PASS_THROUGH ? Kind.PASS_THROUGH : Kind.SECOND_STAGE,
    legacy: true,
    fpd: c.fpd,
    ssRoot: c.slptptr,
    ssLevels: c.aw + 2,
    ssee: false,
    ssade: false,
    fsRoot: 0,
    fsLevels: 4,
    sre: false,
    wpe: false,
    eafe: false,
    pwsnp: true,
    ridPriv: false,
  };
}

/** A scalable-mode configuration from a context entry and a PASID entry. */
export function scalableCfg(c: CtxInfo, p: PasidInfo): Cfg {
  const kind =
    p.pgtt === Pgtt.PASS_THROUGH
      ? Kind.PASS_THROUGH
      : p.pgtt === Pgtt.SECOND_STAGE
        ? Kind.SECOND_STAGE
        : p.pgtt === Pgtt.FIRST_STAGE
          ? Kind.FIRST_STAGE
          : Kind.NESTED;
  return {
    sid: c.sid,
    pasid: p.pasid,
    did: p.did,
    tag: tagOf(p.did, p.pasid),
    kind,
    legacy: false,
    fpd: c.fpd || p.fpd,
    ssRoot: p.ssptptr,
    ssLevels: p.aw + 2,
    ssee: p.ssee,
    ssade: p.ssade,
    fsRoot: p.fsptptr,
    fsLevels: p.fspm === 1 ? 5 : 4,
    sre: p.sre,
    wpe: p.wpe,
    eafe: p.eafe,
    pwsnp: p.pwsnp,
    ridPriv: c.ridPriv,
  };
}

function hexN(v: number): string {
  return `0x${v.toString(16)}`;
}
