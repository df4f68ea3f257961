/**
 * The translation fast path of one VT-d unit: the caches the hardware has, in front of
 * the walker (Intel VT-d spec 6.1-6.2 caching, 3.4-3.8 translation, 7.1.3 fault
 * reasons). The configuration caches (context, PASID, resolved configurations) are in
 * config-cache.ts, the IOTLB's VT-d rules in iotlb.ts (core's FastIotlb tagged by
 * DID * 2^20 + PASID), the walker in walk.ts (levels as generic_pt/fmt/vtdss.h: PTE =
 * 0, PDE = 1, PDPE = 2, PML4E = 3, PML5E = 4), explain in explain.ts. Every cache keeps
 * what it holds until an invalidation drops it, as hardware does (spec 6.5). A hit
 * costs a typed-array read and one IOTLB probe (or one micro-TLB compare for requests
 * without PASID): no allocation, no closure, no BigInt.
 */

import type { CacheCounters, FaultClass, PhysicalMemory, Translation, WalkStep } from "@iommu-kit/core";
import { Access, hex, IommuError, makeFault, NO_PASID, Perm } from "@iommu-kit/core";
import { IOTLB_MICRO_MASK, IOTLB_MICRO_META, microMetaView, newMicroTlb } from "@iommu-kit/core/driver";
import { ConfigCaches } from "./config-cache.ts";
import { explainWalk } from "./explain.ts";
import type { FaultRecord } from "./format/fault-record.ts";
import { encodeFaultRecord, Fr, faultReasonClass, faultReasonName } from "./format/fault-record.ts";
import type { CapFields, EcapFields } from "./format/registers.ts";
import { Ttm } from "./format/registers.ts";
import type { CtxInfo, PasidInfo, ReadFault } from "./internal/config.ts";
import {
  ABORT_DMA,
  ConfigReader,
  isReadFault,
  legacyCfg,
  scalableCfg,
  UNTRANSLATED_BEYOND_HAW,
} from "./internal/config.ts";
import { wordsToBytes } from "./internal/words.ts";
import type { VtdIotlb } from "./iotlb.ts";
import {
  createIotlb,
  fillMeta,
  invalidateIotlb,
  invalidatePasidIotlb,
  Meta,
  microKey,
  PASID_SPAN,
} from "./iotlb.ts";
import type { PageRequester } from "./prq.ts";
import type { Cfg } from "./walk.ts";
import { Kind, PageWalker, permFor } from "./walk.ts";

export { reduceBig } from "./walk.ts";

const PAGE = 4096;
/** permFor(access) for access & 7 (READ 1, WRITE 2, EXEC 4), as a table. */
const NEED: Uint8Array = Uint8Array.from({ length: 8 }, (_, a) => permFor(a));
const RWX = Perm.R | Perm.W | Perm.X;
// Module-local copies of imported constants the fast lane reads: an imported binding can
// cost a getter call per read when the module is loaded through a CommonJS transform.
const NO_PASID_L: number = NO_PASID;
const SIZE_SHIFT: number = Meta.SIZE_SHIFT;
const KIND_SS: number = Kind.SECOND_STAGE;
/** Int32 index of micro slot 0's meta (core's IOTLB_MICRO_META). */
const MICRO_META: number = IOTLB_MICRO_META;
/** The micro-TLB slot's word index ((vpn & IOTLB_MICRO_MASK) * 4) from IOVA bits 21:10. */
const MICRO_X_MASK: number = IOTLB_MICRO_MASK << 2;
/** The interrupt address range (spec 3.15): 0xFEE0_0000 - 0xFEEF_FFFF. */
const INTR_BASE = 0xfee00000;
const INTR_END = 0xfef00000;
/** Where a lane meta word keeps the entry's rights for its privilege (see laneMeta). */
const LANE_PERM_SHIFT = 8;

/**
 * The access bits of a lane meta word (bit a set when access a = access & 7 is allowed)
 * for rights `perm` (2:0) with WRITE_WALK in bit 3: a write needs W and no D bit left
 * to set (permFor).
 */
const LANE_ALLOWED: Uint8Array = Uint8Array.from({ length: 16 }, (_, i) => {
  let allowed = 0;
  for (let a = 0; a < 8; a++) {
    const need = NEED[a]!;
    if ((i & need) === need && !((a & Access.WRITE) !== 0 && (i & 8) !== 0)) allowed |= 1 << a;
  }
  return allowed;
});

/**
 * The micro-TLB meta of an IOTLB entry for requests of one privilege (the fast lane's
 * word): the leaf size in 31:26 as the IOTLB meta, that privilege's rights in 10:8, and
 * in 7:0 a bit per access value a = access & 7 (READ 1, WRITE 2, EXEC 4) set when the
 * rights allow it (permFor) and, for writes, no D bit is left to set (WRITE_WALK). One
 * table read (it runs on every main-IOTLB hit).
 */
export function laneMeta(meta: number, priv: boolean): number {
  const perm = priv ? (meta >>> Meta.SUP_SHIFT) & 7 : meta & 7;
  const allowed = LANE_ALLOWED[perm | ((meta & Meta.WRITE_WALK) !== 0 ? 8 : 0)]!;
  return ((meta & ~0x3ff_ffff) | (perm << LANE_PERM_SHIFT) | allowed) >>> 0;
}

/** The caches and the hot path of one VT-d unit. The hardware model extends it. */
export class FastPath {
  readonly memory: PhysicalMemory;
  readonly cap: CapFields;
  readonly ecap: EcapFields;
  /** Host address width. */
  readonly haw: number;
  /** 2^haw: no physical address reaches it. */
  readonly hawLimit: number;
  readonly walker: PageWalker;
  readonly reader: ConfigReader;
  readonly iotlb: VtdIotlb;
  /**
   * The IOTLB's micro-TLB (read on every fast-lane hit). Set by its initializer, as the
   * other fields the hit path reads (ridKey, #laneHits): written once, V8 folds them to
   * constants when it knows the object, as in a caller's loop over one unit.
   */
  readonly micro: Float64Array = newMicroTlb();
  /** The micro-TLB's slot metas, as int32 (core's IOTLB_MICRO_META). */
  readonly #micro32: Int32Array = microMetaView(this.micro);
  /** The context and PASID caches and the resolved configurations (config-cache.ts). */
  readonly configs: ConfigCaches = new ConfigCaches();
  /** Context cache: source-id -> entry. */
  readonly contextCache: Map<number, CtxInfo> = this.configs.contextCache;
  /** PASID cache: source-id * 2^20 + PASID -> entry. */
  readonly pasidCache: Map<number, PasidInfo> = this.configs.pasidCache;
  /** Resolved configurations for requests without PASID, by source-id. */
  readonly ridCfg: Array<Cfg | null> = this.configs.ridCfg;
  /** The micro-TLB key per source-id, or -1 (see ConfigCaches.ridKey). Read on every fast-lane request. */
  readonly ridKey: Float64Array = this.configs.ridKey;
  /** Resolved configurations for requests with PASID, by source-id * 2^20 + PASID. */
  readonly pasidCfg: Map<number, Cfg> = this.configs.pasidCfg;

  #enabled = false;
  /** GSTS.TES. While it is clear every fast-lane key is -1 (ConfigCaches.setLane): the lane misses. */
  get enabled(): boolean {
    return this.#enabled;
  }
  set enabled(on: boolean) {
    this.#enabled = on;
    this.configs.setLane(on);
  }
  /** Translation table mode latched by SRTP. */
  ttm: number = Ttm.LEGACY;
  /** Root table address latched by SRTP. */
  rta = 0;

  /**
   * Hits served by the source-id fast lane (IOTLB and configuration hits both), modulo
   * 2^32: an int32 add in an off-heap array, whose address the hit path embeds. Each
   * wrap adds 2^32 to #laneWraps.
   */
  readonly #laneHits: Int32Array = new Int32Array(new ArrayBuffer(4));
  #laneWraps = 0;
  // Doubles from the start (-0): an increment is one float add, with no small-integer
  // overflow check or retagging; counters() reports them + 0 (never -0).
  iotlbHits = -0;
  iotlbMisses = -0;
  configHits = -0;
  configMisses = -0;
  walks = -0;
  invalidations = 0;
  /** Turns recoverable faults into page requests (prq.ts; set by the hardware model when ECAP.PRS). */
  pageRequester: PageRequester | null = null;

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
    this.hawLimit = 2 ** haw;
    this.reader = new ConfigReader(memory, cap, ecap, haw);
    this.iotlb = createIotlb(iotlbSizeLg2, this.micro);
  }

  /** Cache and walk counters. */
  counters(): CacheCounters {
    const lane = this.#laneWraps * 2 ** 32 + (this.#laneHits[0]! >>> 0);
    return {
      iotlbHits: this.iotlbHits + lane + 0,
      iotlbMisses: this.iotlbMisses + 0,
      configHits: this.configHits + lane + 0,
      configMisses: this.configMisses + 0,
      walks: this.walks + 0,
      invalidations: this.invalidations,
    };
  }

  /**
   * Translates one request (see core's translation.ts). `sid` is the 16-bit
   * source-id; `pasid` a PASID or NO_PASID. Throws only for a source-id or PASID out
   * of range (misuse).
   */
  translate(sid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    // Fast lane (kept small so it inlines into callers): a request without PASID whose
    // source-id has a key (ridKey is -1 while translation is disabled), served by the
    // micro-TLB; translateSlow for the rest (too big to inline, so this stays small in
    // callers).
    if (pasid === NO_PASID_L) {
      // Page offset and micro slot from the IOVA's low 32 bits (ToInt32 keeps them for an
      // integer below 2^53), the page address as iova - offset, exact. No integer
      // test is needed: a fractional IOVA gives a fractional page address, and a
      // negative, huge or non-finite one a page no live slot holds (live slots hold pages
      // of checked addresses; an empty slot's key, NaN, equals no key, -1 included).
      const lo = iova | 0;
      const off = lo & 4095;
      const x = (lo >>> 10) & MICRO_X_MASK;
      const u = this.micro;
      if (u[x] === iova - off && u[x + 1] === this.ridKey[sid]) {
        // The key carries RID_PRIV and the lane meta the rights of that privilege: bit a
        // of its low byte allows access a (laneMeta), one shift and test.
        const meta = this.#micro32[(x << 1) + MICRO_META]!;
        if (((meta >>> (access & 7)) & 1) !== 0) {
          // One counter on the fast lane: each of its hits is also a configuration hit.
          const h = this.#laneHits;
          const n = (h[0]! + 1) | 0;
          h[0] = n;
          if (n === 0) this.#laneWraps++;
          out.pa = u[x + 2]! + off;
          out.perm = (meta >>> LANE_PERM_SHIFT) & 7;
          out.sizeLg2 = meta >>> SIZE_SHIFT;
          out.fault = null;
          return true;
        }
      }
    }
    return this.translateSlow(sid, pasid, iova, access, out);
  }

  /** Everything the fast lane does not serve: configuration lookups, PASID requests, misses. */
  translateSlow(sid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    // Misuse first, before any cache is probed: page -1 / -2 are the IOTLB's empty and
    // deleted markers, and an out-of-range PASID would alias another source-id's key.
    this.checkRequest(sid, pasid, iova);
    if (!this.enabled) {
      // GSTS.TES = 0: DMA is not remapped (spec 10.4.5); no PA reaches 2^HAW (spec 8.1 HAW).
      if (iova >= this.hawLimit) return this.untranslatedBeyondHaw(out, sid, pasid, iova);
      out.pa = iova;
      out.perm = RWX;
      out.sizeLg2 = 12;
      out.fault = null;
      return true;
    }
    const iotlb = this.iotlb;
    let cfg: Cfg | null | undefined;
    if (pasid === NO_PASID) {
      cfg = this.ridCfg[sid];
    } else {
      cfg = this.pasidCfg.get(sid * PASID_SPAN + pasid);
    }
    if (cfg === undefined || cfg === null) {
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
    const vpn = Math.floor(iova / PAGE);
    const slot = iotlb.lookup(cfg.tag, vpn);
    if (slot >= 0) {
      const d = iotlb.data;
      const meta = d[(slot << 2) + 3]!;
      const perm = priv ? (meta >>> Meta.SUP_SHIFT) & 7 : meta & 7;
      const need = permFor(access);
      if ((perm & need) === need && !(access & Access.WRITE && meta & Meta.WRITE_WALK)) {
        this.iotlbHits++;
        if (pasid === NO_PASID) iotlb.remember(slot, vpn, microKey(cfg.tag, priv), laneMeta(meta, priv));
        out.pa = d[(slot << 2) + 2]! + (iova - vpn * PAGE);
        out.perm = perm;
        out.sizeLg2 = meta >>> Meta.SIZE_SHIFT;
        out.fault = null;
        return true;
      }
    }
    this.iotlbMisses++;
    // The common miss (a 4-level second-stage table, no A/D, no trace: walkSs4) walked and
    // filled here, one call fewer; a fault, or any other table, goes to walkAndFill, which
    // walks again (these walks have no side effects) and reports it.
    const w = this.walker;
    if (cfg.kind === KIND_SS && cfg.ssLevels === 4 && !cfg.ssade && w.trace === null) {
      if (w.walkSs4(cfg, iova, access) === 0) {
        // Second stage: both privileges get the same rights.
        const perm = w.permUser;
        const pa = w.pa;
        const need = NEED[access & 7]!;
        if ((perm & need) === need && (pa < INTR_BASE || pa >= INTR_END)) {
          this.walks++;
          const sizeLg2 = w.sizeLg2;
          return this.#fillOut(
            cfg,
            iova,
            pa,
            fillMeta(perm, perm, false, KIND_SS, sizeLg2),
            perm,
            sizeLg2,
            out,
          );
        }
      }
    }
    return this.walkAndFill(cfg, sid, pasid, iova, access, priv, false, out, true);
  }

  /**
   * Refuses misuse with IommuError EINVAL: a source-id that is not a 16-bit integer, a
   * PASID that is neither NO_PASID nor a 20-bit integer, an IOVA that is not an
   * integer in [0, 2^53) (callers with a bigint input pass 0). Every entry point
   * (translate, translateBig, explain) calls it before reading any cache or table.
   */
  checkRequest(sid: number, pasid: number, iova: number): void {
    if (!(sid >= 0 && sid <= 0xffff && Number.isInteger(sid)))
      throw new IommuError("EINVAL", `source-id ${sid} is not a 16-bit number`, { rid: sid });
    if (pasid !== NO_PASID && !(pasid >= 0 && pasid < PASID_SPAN && Number.isInteger(pasid)))
      throw new IommuError("EINVAL", `PASID ${pasid} is not a 20-bit number`, { pasid });
    if (!(iova >= 0 && Number.isSafeInteger(iova)))
      throw new IommuError("EINVAL", `iova ${iova} is not an address below 2^53`, { iova });
  }

  /** The fault of an untranslated (TES = 0) address at or above 2^HAW: nothing is recorded. */
  untranslatedBeyondHaw(out: Translation, sid: number, pasid: number, page: number): false {
    out.fault = makeFault("address-size", false, {
      vendor: "intel-vtd",
      code: null,
      name: UNTRANSLATED_BEYOND_HAW,
      fields: { SID: sid, PASID: pasid === NO_PASID ? null : pasid, FI: hex(page - (page % PAGE)) },
    });
    return false;
  }

  #passThrough(
    cfg: Cfg,
    sid: number,
    pasid: number,
    iova: number,
    access: number,
    out: Translation,
  ): boolean {
    if (iova >= this.hawLimit)
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
    const fr =
      cfg.kind === KIND_SS && cfg.ssLevels === 4 && !cfg.ssade && w.trace === null
        ? w.walkSs4(cfg, iova, access)
        : w.walk(cfg, iova, access, priv, upper);
    if (fr !== 0)
      return this.fault(out, fr, cfg.fpd, sid, pasid, iova, access, w.notPresent ? "translation" : undefined);
    const perm = priv ? w.permSup : w.permUser;
    const need = NEED[access & 7]!;
    if ((perm & need) !== need) {
      const pf = w.permissionFault(cfg, access, priv, perm);
      if (pf !== 0) return this.fault(out, pf, cfg.fpd, sid, pasid, iova, access);
    }
    const pa = w.pa;
    // The interrupt address range (spec 3.15) is not memory.
    if (pa >= INTR_BASE && pa < INTR_END)
      return this.fault(
        out,
        cfg.legacy ? Fr.INTERRUPT_RANGE : Fr.SM_INTERRUPT_RANGE,
        cfg.fpd,
        sid,
        pasid,
        iova,
        access,
      );
    const sizeLg2 = w.sizeLg2;
    if (!fill) {
      out.pa = pa;
      out.perm = perm;
      out.sizeLg2 = sizeLg2;
      out.fault = null;
      return true;
    }
    const meta = fillMeta(w.permUser, w.permSup, w.writeNeedsWalk, cfg.kind, sizeLg2);
    return this.#fillOut(cfg, iova, pa, meta, perm, sizeLg2, out);
  }

  /** Caches a walk's result (the leaf's byte `pa` for `iova`, with `meta`) and reports it in `out`. */
  #fillOut(
    cfg: Cfg,
    iova: number,
    pa: number,
    meta: number,
    perm: number,
    sizeLg2: number,
    out: Translation,
  ): true {
    // Every leaf is 4 KiB aligned or larger: the PA's page offset is the IOVA's.
    const vpn = Math.floor(iova / PAGE);
    this.iotlb.insert(cfg.tag, vpn, pa - (iova - vpn * PAGE), meta);
    out.pa = pa;
    out.perm = perm;
    out.sizeLg2 = sizeLg2;
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
    this.configs.remember(sid, pasid, pasid === NO_PASID, cfg);
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
    // A recoverable fault of a PRI device becomes a page request, not a fault record (prq.ts).
    const pr = this.pageRequester;
    if (pr?.offer(out, fr, cls ?? faultReasonClass(fr), sid, pasid, iova, access)) return false;
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

  /** Drops every cached configuration `match` accepts (both request kinds). */
  dropDerivedFor(match: (cfg: Cfg) => boolean): void {
    this.configs.dropDerivedFor(match);
  }

  /** Context-cache invalidation (spec 6.5.2.1): global, by legacy DID, or by source-id under a function mask. */
  invalidateContext(g: "global" | "domain" | "device", did = 0, sid = 0, fm = 0): void {
    this.invalidations++;
    this.configs.invalidateContext(g, this.ttm === Ttm.SCALABLE, did, sid, fm);
  }

  /** PASID-cache invalidation (spec 6.5.2.2): all of a DID, one PASID of a DID, or everything. */
  invalidatePasidCache(g: "domain" | "pasid" | "global", did = 0, pasid = 0): void {
    this.invalidations++;
    this.configs.invalidatePasidCache(g, did, pasid);
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
    return invalidateIotlb(this.iotlb, g, did, addr, am);
  }

  /**
   * PASID-based IOTLB invalidation (spec 6.5.2.4): first-stage and nested entries of
   * (DID, PASID), all of them or those whose leaf covers [addr, addr + 2^(12+am)).
   */
  invalidatePasidIotlb(g: "pasid" | "page", did: number, pasid: number, addr = 0, am = 0): number {
    this.invalidations++;
    return invalidatePasidIotlb(this.iotlb, g, did, pasid, addr, am);
  }

  /** Drops every cache (not an architectural operation: the contract's flushCaches). */
  flushAll(): void {
    this.invalidations++;
    this.iotlb.clear();
    this.configs.clear();
  }

  /**
   * The walk of one request, step by step, without caches and without recording
   * (for explain; see explain.ts). `big` is the input address when it is at or above 2^53.
   */
  explainWalk(
    sid: number,
    pasid: number,
    iova: number,
    access: number,
    big: bigint | null = null,
  ): WalkStep[] {
    this.checkRequest(sid, pasid, big === null ? iova : 0);
    return explainWalk(this, sid, pasid, iova, access, big);
  }
}
