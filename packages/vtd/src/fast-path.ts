/**
 * The translation fast path: the caches VT-d hardware has, in front of the walker.
 *
 * - Context cache: context entries by source-id (legacy entries also tagged by DID).
 * - PASID cache: PASID table entries by (source-id, PASID), tagged by DID.
 * - A resolved-configuration table per (source-id, PASID) built from those two; it is
 *   dropped whenever either source entry is invalidated, so it is never fresher or
 *   staler than the caches it summarises.
 * - IOTLB: 4 KiB entries tagged by DID * 2^20 + PASID (RID_PASID for requests without
 *   PASID, 0 in legacy mode), with the leaf size (page invalidation drops every entry
 *   whose leaf covers the address) and the translation kind in `aux`.
 *
 * Every cache keeps what it holds until an invalidation drops it, as hardware does
 * (spec 6.1-6.5). A hit costs a typed-array read and one IOTLB probe: no allocation,
 * no closure, no BigInt.
 */

import type { CacheCounters, FaultClass, PhysicalMemory, Translation, WalkStep } from "@iommu-kit/core";
import { Access, hex, IommuError, makeFault, NO_PASID, Perm } from "@iommu-kit/core";
import { Iotlb } from "@iommu-kit/core/driver";
import type { FaultRecord } from "./format/fault-record.ts";
import { encodeFaultRecord, Fr, faultReasonClass, faultReasonName } from "./format/fault-record.ts";
import type { CapFields, EcapFields } from "./format/registers.ts";
import { Ttm } from "./format/registers.ts";
import type { CtxInfo, PasidInfo, ReadFault } from "./internal/config.ts";
import { ConfigReader, isReadFault, legacyCfg, scalableCfg } from "./internal/config.ts";
import { wordsToBytes } from "./internal/words.ts";
import type { Cfg } from "./walk.ts";
import { Kind, PageWalker, permFor } from "./walk.ts";

/** aux bits of an IOTLB entry: supervisor perm (2:0), write-needs-walk (3), kind (6:4). */
export const Aux = {
  SUP_MASK: 7,
  WRITE_WALK: 8,
  KIND_SHIFT: 4,
} as const;

const PAGE = 4096;
const PASID_SPAN = 1048576;
const RWX = Perm.R | Perm.W | Perm.X;

/** The caches and the hot path of one VT-d unit. The hardware model extends it. */
export class FastPath {
  readonly memory: PhysicalMemory;
  readonly cap: CapFields;
  readonly ecap: EcapFields;
  /** Host address width. */
  readonly haw: number;
  readonly walker: PageWalker;
  readonly reader: ConfigReader;
  readonly iotlb: Iotlb;
  /** Context cache: source-id -> entry. */
  readonly contextCache: Map<number, CtxInfo> = new Map();
  /** PASID cache: source-id * 2^20 + PASID -> entry. */
  readonly pasidCache: Map<number, PasidInfo> = new Map();
  /** Resolved configurations for requests without PASID, by source-id. */
  readonly ridCfg: Array<Cfg | null> = new Array<Cfg | null>(65536).fill(null);
  /** Resolved configurations for requests with PASID, by source-id * 2^20 + PASID. */
  readonly pasidCfg: Map<number, Cfg> = new Map();

  /** GSTS.TES. */
  enabled = false;
  /** Translation table mode latched by SRTP. */
  ttm: number = Ttm.LEGACY;
  /** Root table address latched by SRTP. */
  rta = 0;

  iotlbHits = 0;
  iotlbMisses = 0;
  configHits = 0;
  configMisses = 0;
  walks = 0;
  invalidations = 0;

  constructor(memory: PhysicalMemory, cap: CapFields, ecap: EcapFields, haw: number, iotlbSizeLg2: number) {
    this.memory = memory;
    this.cap = cap;
    this.ecap = ecap;
    this.haw = haw;
    this.walker = new PageWalker(memory, {
      haw,
      ss2M: (cap.sllps & 1) !== 0,
      ss1G: (cap.sllps & 2) !== 0,
      fs1G: cap.fs1gp,
      snoopControl: ecap.sc,
    });
    this.reader = new ConfigReader(memory, cap, ecap, haw);
    this.iotlb = new Iotlb(iotlbSizeLg2);
  }

  /** Cache and walk counters. */
  counters(): CacheCounters {
    return {
      iotlbHits: this.iotlbHits,
      iotlbMisses: this.iotlbMisses,
      configHits: this.configHits,
      configMisses: this.configMisses,
      walks: this.walks,
      invalidations: this.invalidations,
    };
  }

  /**
   * Translates one request (see core's translation.ts). `sid` is the 16-bit
   * source-id; `pasid` a PASID or NO_PASID. Throws only for a source-id or PASID out
   * of range (misuse).
   */
  translate(sid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    if (!this.enabled) {
      // GSTS.TES = 0: DMA is not remapped (spec 10.4.5).
      out.pa = iova;
      out.perm = RWX;
      out.sizeLg2 = 12;
      out.fault = null;
      return true;
    }
    let cfg: Cfg | null | undefined;
    if (pasid === NO_PASID) {
      cfg = this.ridCfg[sid];
    } else {
      cfg = this.pasidCfg.get(sid * PASID_SPAN + pasid);
    }
    if (cfg === undefined || cfg === null) {
      this.#checkRequest(sid, pasid, iova);
      this.configMisses++;
      const r = this.resolve(sid, pasid);
      if (isReadFault(r)) return this.fault(out, r.fr, r.fpd, sid, pasid, iova, access);
      cfg = r;
    } else {
      this.configHits++;
    }
    const priv = pasid === NO_PASID ? cfg.ridPriv : (access & Access.PRIV) !== 0;
    if (priv && !cfg.sre && !cfg.legacy)
      return this.fault(out, Fr.SM_SRE_CLEAR, cfg.fpd, sid, pasid, iova, access);
    if (cfg.kind === Kind.PASS_THROUGH) return this.#passThrough(cfg, sid, pasid, iova, access, out);
    const iotlb = this.iotlb;
    const slot = iotlb.lookup(cfg.tag, Math.floor(iova / PAGE));
    if (slot >= 0) {
      const aux = iotlb.aux[slot]!;
      const perm = priv ? aux & Aux.SUP_MASK : iotlb.perms[slot]!;
      const need = permFor(access);
      if ((perm & need) === need && !(access & Access.WRITE && aux & Aux.WRITE_WALK)) {
        this.iotlbHits++;
        out.pa = iotlb.pas[slot]! + (iova % PAGE);
        out.perm = perm;
        out.sizeLg2 = iotlb.sizes[slot]!;
        out.fault = null;
        return true;
      }
    }
    this.iotlbMisses++;
    this.#checkRequest(sid, pasid, iova);
    return this.walkAndFill(cfg, sid, pasid, iova, access, priv, false, out);
  }

  #checkRequest(sid: number, pasid: number, iova: number): void {
    if (!(sid >= 0 && sid <= 0xffff && Number.isInteger(sid)))
      throw new IommuError("EINVAL", `source-id ${sid} is not a 16-bit number`, { rid: sid });
    if (pasid !== NO_PASID && !(pasid >= 0 && pasid < PASID_SPAN && Number.isInteger(pasid)))
      throw new IommuError("EINVAL", `PASID ${pasid} is not a 20-bit number`, { pasid });
    if (!(iova >= 0 && Number.isSafeInteger(iova)))
      throw new IommuError("EINVAL", `iova ${iova} is not an address below 2^53`, { iova });
  }

  #passThrough(
    cfg: Cfg,
    sid: number,
    pasid: number,
    iova: number,
    access: number,
    out: Translation,
  ): boolean {
    if (iova >= 2 ** this.haw)
      return this.fault(
        out,
        cfg.legacy ? Fr.BEYOND_AGAW : Fr.SM_BEYOND_AGAW,
        cfg.fpd,
        sid,
        pasid,
        iova,
        access,
      );
    out.pa = iova;
    out.perm = RWX;
    out.sizeLg2 = 12;
    out.fault = null;
    return true;
  }

  /** Walks on an IOTLB miss and fills the IOTLB on success (unless `fill` is false). */
  walkAndFill(
    cfg: Cfg,
    sid: number,
    pasid: number,
    iova: number,
    access: number,
    priv: boolean,
    upper: boolean,
    out: Translation,
    fill = true,
  ): boolean {
    this.walks++;
    const w = this.walker;
    const fr = w.walk(cfg, iova, access, priv, upper);
    if (fr !== 0)
      return this.fault(out, fr, cfg.fpd, sid, pasid, iova, access, w.notPresent ? "translation" : undefined);
    const perm = priv ? w.permSup : w.permUser;
    const pf = w.permissionFault(cfg, access, priv, perm);
    if (pf !== 0) return this.fault(out, pf, cfg.fpd, sid, pasid, iova, access);
    if (PageWalker.inInterruptRange(w.pa))
      return this.fault(
        out,
        cfg.legacy ? Fr.INTERRUPT_RANGE : Fr.SM_INTERRUPT_RANGE,
        cfg.fpd,
        sid,
        pasid,
        iova,
        access,
      );
    if (fill) {
      const pagePa = w.pa - (w.pa % PAGE);
      const aux = w.permSup | (w.writeNeedsWalk ? Aux.WRITE_WALK : 0) | (cfg.kind << Aux.KIND_SHIFT);
      this.iotlb.insert(cfg.tag, Math.floor(iova / PAGE), pagePa, w.permUser, w.sizeLg2, aux);
    }
    out.pa = w.pa;
    out.perm = perm;
    out.sizeLg2 = w.sizeLg2;
    out.fault = null;
    return true;
  }

  /**
   * Resolves the configuration of (sid, pasid) through the context and PASID caches,
   * reading memory on a miss, and remembers it. Returns a fault on an invalid entry.
   */
  resolve(sid: number, pasid: number): Cfg | ReadFault {
    if (this.ttm === Ttm.RESERVED || (this.ttm === Ttm.SCALABLE && !this.ecap.smts))
      return { fr: Fr.SM_RTA_INVALID, fpd: false };
    if (this.ttm === Ttm.ABORT_DMA) return { fr: ABORT_DMA, fpd: true };
    const scalable = this.ttm === Ttm.SCALABLE;
    // Legacy mode has no PASIDs: a request with one is blocked (spec 7.1.3, 0x31).
    if (!scalable && pasid !== NO_PASID) return { fr: Fr.SM_TTM0_PASID, fpd: false };
    let ctx = this.contextCache.get(sid);
    if (ctx === undefined) {
      const c = this.reader.readContext(this.rta, scalable, sid);
      if (isReadFault(c)) return c;
      ctx = c;
      this.contextCache.set(sid, ctx);
    }
    let cfg: Cfg;
    if (ctx.legacy) {
      cfg = legacyCfg(ctx);
    } else {
      const eff = this.reader.walkPasid(ctx, pasid);
      if (typeof eff !== "number") return eff;
      const key = sid * PASID_SPAN + eff;
      let pe = this.pasidCache.get(key);
      if (pe === undefined) {
        const p = this.reader.readPasid(ctx, eff);
        if (isReadFault(p)) return p;
        pe = p;
        this.pasidCache.set(key, pe);
      }
      cfg = scalableCfg(ctx, pe);
    }
    if (pasid === NO_PASID) this.ridCfg[sid] = cfg;
    else this.pasidCfg.set(sid * PASID_SPAN + pasid, cfg);
    return cfg;
  }

  /**
   * Builds the fault of a request, records it unless `suppressed` (FPD), and returns
   * false. Off the hot path.
   */
  fault(
    out: Translation,
    fr: number,
    suppressed: boolean,
    sid: number,
    pasid: number,
    iova: number,
    access: number,
    cls?: FaultClass,
  ): false {
    if (fr === ABORT_DMA) {
      out.fault = makeFault("blocked", false, {
        vendor: "intel-vtd",
        code: null,
        name: "abort-DMA mode (RTADDR.TTM = 11b)",
        fields: { SID: sid, PASID: pasid === NO_PASID ? null : pasid },
      });
      return false;
    }
    const withPasid = pasid !== NO_PASID;
    const rec: FaultRecord = {
      fi: iova - (iova % PAGE),
      sid,
      t2: false,
      priv: withPasid && (access & Access.PRIV) !== 0,
      exe: withPasid && (access & Access.EXEC) !== 0,
      pp: withPasid,
      fr,
      pv: withPasid ? pasid : 0,
      at: 0,
      t1: (access & Access.WRITE) === 0,
      f: true,
    };
    const recorded = suppressed ? false : this.recordFault(rec);
    out.fault = makeFault(cls ?? faultReasonClass(fr), recorded, {
      vendor: "intel-vtd",
      code: fr,
      name: faultReasonName(fr),
      fields: {
        SID: sid,
        PASID: withPasid ? pasid : null,
        FI: hex(rec.fi),
        T1: rec.t1 ? 1 : 0,
        T2: 0,
        EXE: rec.exe ? 1 : 0,
        PRIV: rec.priv ? 1 : 0,
        PP: rec.pp ? 1 : 0,
        FR: fr,
        FPD: suppressed,
      },
      raw: wordsToBytes(encodeFaultRecord(rec)),
    });
    return false;
  }

  /** Writes a fault record; true when written. The base model records nothing. */
  recordFault(_rec: FaultRecord): boolean {
    return false;
  }

  /** Drops every cached configuration derived for `sid` (both request kinds). */
  dropDerivedFor(match: (cfg: Cfg) => boolean): void {
    for (let i = 0; i < 65536; i++) {
      const c = this.ridCfg[i];
      if (c !== null && c !== undefined && match(c)) this.ridCfg[i] = null;
    }
    for (const [k, c] of this.pasidCfg) if (match(c)) this.pasidCfg.delete(k);
  }

  /** Context-cache invalidation: global, by legacy DID, or by source-id under a function mask. */
  invalidateContext(g: "global" | "domain" | "device", did = 0, sid = 0, fm = 0): void {
    this.invalidations++;
    if (g === "global" || (g === "domain" && this.ttm === Ttm.SCALABLE)) {
      this.contextCache.clear();
      this.ridCfg.fill(null);
      this.pasidCfg.clear();
      return;
    }
    if (g === "domain") {
      for (const [k, c] of this.contextCache) if (c.legacy && c.did === did) this.contextCache.delete(k);
      this.dropDerivedFor((c) => c.legacy && c.did === did);
      return;
    }
    // FM (spec 6.5.2.1): 0 none, 1 masks function bit 2, 2 bits 2:1, 3 bits 2:0.
    const mask = ~[0, 4, 6, 7][fm & 3]! & 0xffff;
    for (const k of this.contextCache.keys()) if ((k & mask) === (sid & mask)) this.contextCache.delete(k);
    this.dropDerivedFor((c) => (c.sid & mask) === (sid & mask));
  }

  /** PASID-cache invalidation: all of a DID, one PASID of a DID, or everything. */
  invalidatePasidCache(g: "domain" | "pasid" | "global", did = 0, pasid = 0): void {
    this.invalidations++;
    if (g === "global") {
      this.pasidCache.clear();
      this.dropDerivedFor((c) => !c.legacy);
      return;
    }
    const hit = (d: number, p: number): boolean => d === did && (g === "domain" || p === pasid);
    for (const [k, e] of this.pasidCache) if (hit(e.did, e.pasid)) this.pasidCache.delete(k);
    this.dropDerivedFor((c) => !c.legacy && hit(c.did, c.pasid));
  }

  /**
   * IOTLB invalidation (spec 6.5.2.3): global, domain-selective, or page-selective
   * within a domain for [addr, addr + 2^(12+am)). Page-selective drops second-stage
   * entries whose leaf covers the range and every nested entry of the domain (their
   * IOVAs cannot be matched against a GPA); first-stage entries need the PASID-based
   * invalidation.
   */
  invalidateIotlb(g: "global" | "domain" | "page", did = 0, addr = 0, am = 0): number {
    this.invalidations++;
    if (g === "global") {
      const n = this.iotlb.size;
      this.iotlb.clear();
      return n;
    }
    const lo = did * PASID_SPAN;
    const hi = lo + PASID_SPAN;
    const t = this.iotlb;
    if (g === "domain") return t.invalidateWhere((i) => t.tags[i]! >= lo && t.tags[i]! < hi);
    const start = addr;
    const end = addr + 2 ** (12 + am);
    return t.invalidateWhere((i) => {
      const tag = t.tags[i]!;
      if (tag < lo || tag >= hi) return false;
      const kind = (t.aux[i]! >>> Aux.KIND_SHIFT) & 7;
      if (kind === Kind.NESTED) return true;
      if (kind !== Kind.SECOND_STAGE) return false;
      return covers(t, i, start, end);
    });
  }

  /**
   * PASID-based IOTLB invalidation (spec 6.5.2.4): first-stage and nested entries of
   * (DID, PASID), all of them or those whose leaf covers [addr, addr + 2^(12+am)).
   */
  invalidatePasidIotlb(g: "pasid" | "page", did: number, pasid: number, addr = 0, am = 0): number {
    this.invalidations++;
    const tag = did * PASID_SPAN + pasid;
    const t = this.iotlb;
    const start = addr;
    const end = addr + 2 ** (12 + am);
    return t.invalidateWhere((i) => {
      if (t.tags[i] !== tag) return false;
      const kind = (t.aux[i]! >>> Aux.KIND_SHIFT) & 7;
      if (kind !== Kind.FIRST_STAGE && kind !== Kind.NESTED) return false;
      return g === "pasid" || covers(t, i, start, end);
    });
  }

  /** Drops every cache (not an architectural operation: the contract's flushCaches). */
  flushAll(): void {
    this.invalidations++;
    this.iotlb.clear();
    this.contextCache.clear();
    this.pasidCache.clear();
    this.ridCfg.fill(null);
    this.pasidCfg.clear();
  }

  /**
   * The walk of one request, step by step, without caches and without recording
   * (for explain). Returns the steps and the outcome.
   */
  explainWalk(sid: number, pasid: number, iova: number, access: number, upper: boolean): WalkStep[] {
    const steps: WalkStep[] = [];
    if (!this.enabled) {
      steps.push({ what: "GSTS", address: null, note: "translation disabled (TES = 0): untranslated" });
      return steps;
    }
    const saved = this.#saveCaches();
    this.reader.trace = steps;
    this.walker.trace = steps;
    this.walker.dryRun = true;
    try {
      this.contextCache.clear();
      this.pasidCache.clear();
      const r = this.resolve(sid, pasid);
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
      const fr = this.walker.walk(r, iova, access, priv, upper);
      if (fr !== 0) {
        steps.push({
          what: "fault",
          address: null,
          note: `fault 0x${fr.toString(16)}: ${faultReasonName(fr)}`,
        });
        return steps;
      }
      const perm = priv ? this.walker.permSup : this.walker.permUser;
      const pf = this.walker.permissionFault(r, access, priv, perm);
      steps.push({
        what: "translation",
        address: this.walker.pa,
        note:
          pf === 0
            ? `pa 0x${this.walker.pa.toString(16)} size 2^${this.walker.sizeLg2}`
            : `fault 0x${pf.toString(16)}: ${faultReasonName(pf)}`,
      });
      return steps;
    } finally {
      this.reader.trace = null;
      this.walker.trace = null;
      this.walker.dryRun = false;
      this.#restoreCaches(saved);
    }
  }

  #saveCaches(): {
    ctx: Map<number, CtxInfo>;
    pasid: Map<number, PasidInfo>;
    rid: Array<Cfg | null>;
    pc: Map<number, Cfg>;
  } {
    return {
      ctx: new Map(this.contextCache),
      pasid: new Map(this.pasidCache),
      rid: [...this.ridCfg],
      pc: new Map(this.pasidCfg),
    };
  }

  #restoreCaches(s: {
    ctx: Map<number, CtxInfo>;
    pasid: Map<number, PasidInfo>;
    rid: Array<Cfg | null>;
    pc: Map<number, Cfg>;
  }): void {
    this.contextCache.clear();
    for (const [k, v] of s.ctx) this.contextCache.set(k, v);
    this.pasidCache.clear();
    for (const [k, v] of s.pasid) this.pasidCache.set(k, v);
    for (let i = 0; i < 65536; i++) this.ridCfg[i] = s.rid[i] ?? null;
    this.pasidCfg.clear();
    for (const [k, v] of s.pc) this.pasidCfg.set(k, v);
  }
}

/** A pseudo fault reason for abort-DMA mode (no spec code: nothing is recorded). */
const ABORT_DMA = -1;

function covers(t: Iotlb, i: number, start: number, end: number): boolean {
  const size = 2 ** t.sizes[i]!;
  const addr = t.vpns[i]! * PAGE;
  const base = addr - (addr % size);
  return base < end && base + size > start;
}
