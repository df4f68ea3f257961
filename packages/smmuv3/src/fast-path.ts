/**
 * The translation fast path (ARM IHI 0070 3.4 as hardware caches it, 16.2 on TLB and
 * configuration caching): the SMMU's caches in front of the configuration and walk rooms.
 *
 * - A direct-mapped index of the configuration cache (`internal/config.ts`): slot =
 *   StreamID mod size, holding [key, IOTLB tag] side by side, and for requests without a
 *   SubstreamID a table indexed by the StreamID itself (its IOTLB tag), so the hit path
 *   finds a tag with one typed-array read. Forgotten whenever any configuration drops.
 * - The core IOTLB's micro-TLB (as a TBU's), direct-mapped by 4 KiB page: [page address,
 *   tag, pa, meta], emptied whenever the IOTLB drops anything.
 * - The IOTLB (`internal/iotlb.ts`), tagged by (VMID, ASID) (stage-2-only entries by
 *   VMID alone) and filled one 4 KiB page at a time with the leaf size of the walk.
 *   Everything the rest of the model does to it goes through this class's TLBI methods
 *   (the `CommandTarget` the command queue drives) and `flushCaches`.
 *
 * Then the slow path: the whole request (SMMUEN / GBPA, STE and CD through the
 * configuration cache, TTB0/TTB1 selection with TBI, the walk) with its fault raised as
 * an event record once, at the end. Hit path: no allocation, no closure, no BigInt, no
 * call that can go megamorphic (one class per room). Levels: as `walk.ts` (Arm ARM
 * lookup levels 0-3, unchanged).
 */

import type { Fault, PhysicalMemory, Translation, WalkStep } from "@iommu-kit/core";
import { Access, IommuError, Perm } from "@iommu-kit/core";
import type { FastIotlb } from "@iommu-kit/core/driver";
import {
  IOTLB_MICRO_MASK,
  IOTLB_MICRO_META,
  IotlbMeta,
  microMetaView,
  newMicroTlb,
} from "@iommu-kit/core/driver";
import { Narrator, resultStep } from "./explain.ts";
import { EventClass, EventId } from "./format/event.ts";
import { ConfigReader, SID_SPAN } from "./internal/config.ts";
import { blockedFault, eventWords, FaultScratch, faultOf } from "./internal/fault.ts";
import { SmmuTlb } from "./internal/iotlb.ts";
import { POW2, TWO32 } from "./internal/words.ts";
import type { RegisterValues } from "./registers.ts";
import { RegisterFile } from "./registers.ts";
import { MODE_ABORT, MODE_BYPASS, MODE_TRANSLATE, TransCfg, Walker } from "./walk.ts";

const MICRO_MASK = IOTLB_MICRO_MASK;
/** The micro-TLB slot's word index ((vpn & IOTLB_MICRO_MASK) * 4) from IOVA bits 21:10. */
const MICRO_X_MASK: number = IOTLB_MICRO_MASK << 2;
/** Int32 index of micro slot 0's meta (core's IOTLB_MICRO_META). */
const MICRO_META: number = IOTLB_MICRO_META;
/** End of TTB0's range for T0SZ 16 (a quick config, TransCfg.quick). */
const TTB0_QUICK_END = 2 ** 48;
/** A meta word's leaf size log2 is `meta >>> SIZE_SHIFT` (core's IotlbMeta). */
const SIZE_SHIFT = IotlbMeta.SIZE_SHIFT;
// Access flags as literals for the hit path (core's Access.WRITE / EXEC / PRIV).
const A_WRITE = 2;
const A_EXEC = 4;
const A_PRIV = 8;

/** Where a lane meta word keeps the unprivileged rights (the privileged ones are 4 below). */
const LANE_UNPRIV = 20;

/**
 * The access bits 15:0 of a lane meta word for privileged rights `i & 7` and
 * unprivileged rights `i >>> 3`: bit a set when access a = access & 15 (WRITE 2, EXEC
 * 4, PRIV 8) is allowed (W for writes, X for fetches, R otherwise).
 */
const LANE_ALLOWED: Uint16Array = Uint16Array.from({ length: 64 }, (_, i) => {
  let allowed = 0;
  for (let a = 0; a < 16; a++) {
    const perm = a & A_PRIV ? i & 7 : i >>> 3;
    const need = a & A_WRITE ? Perm.W : a & A_EXEC ? Perm.X : Perm.R;
    if ((perm & need) === need) allowed |= 1 << a;
  }
  return allowed;
});

/**
 * The micro-TLB meta of an IOTLB entry (the fast lane's word): the leaf size in 31:26
 * as the IOTLB meta, the privileged rights in 18:16 and the unprivileged ones in 22:20,
 * and in 15:0 a bit per access value a = access & 15 (WRITE 2, EXEC 4, PRIV 8) set when
 * that privilege's rights hold what it needs (W for writes, X for fetches, R otherwise).
 * One table read (it runs on every main-IOTLB hit).
 */
export function laneMeta(packed: number): number {
  const permP = packed & 7;
  const permU = (packed >>> 4) & 7;
  const allowed = LANE_ALLOWED[permP | (permU << 3)]!;
  return ((packed & ~0x3ff_ffff) | (permP << (LANE_UNPRIV - 4)) | (permU << LANE_UNPRIV) | allowed) >>> 0;
}

/** The hardware's cache and walk counters. */
export interface HwCounters {
  iotlbHits: number;
  iotlbMisses: number;
  configHits: number;
  configMisses: number;
  walks: number;
  invalidations: number;
}

/** Registers plus the caches and the translation path (the hardware class adds the queues). */
export class FastPath extends RegisterFile {
  readonly memory: PhysicalMemory;
  readonly tlb: SmmuTlb;
  /** Cache and walk counters. */
  readonly counters: HwCounters = {
    iotlbHits: 0,
    iotlbMisses: 0,
    configHits: 0,
    configMisses: 0,
    walks: 0,
    invalidations: 0,
  };
  readonly #n = new Narrator();
  readonly #f = new FaultScratch();
  readonly #w: Walker;
  readonly #cfg: ConfigReader;
  #lastKey = -2;
  #lastCfg: TransCfg = new TransCfg();
  // Direct-mapped front of the config cache (slot = StreamID mod size, non-SSID and SSID alike).
  /** Per slot [key, IOTLB tag] side by side (one cache line per lookup); key -1 = empty. */
  #slotKT: Float64Array = new Float64Array(0);
  #slotCfgs: TransCfg[] = [];
  // Hit-path fields: initializers (written once, V8 folds them for a known object), run
  // after RegisterFile's constructor (sidBits known).
  /**
   * IOTLB tag of (sid, no SSID) indexed by the StreamID itself (sid <= #slotMask: no
   * aliasing), -1 unknown. All -1 while SMMUEN is 0 (#config fills it only with SMMUEN
   * set, and clearing SMMUEN forgets it): the fast lane's only enable check.
   */
  readonly #ridTag: Float64Array = new Float64Array(2 ** Math.min(Math.max(this.sidBits, 4), 16)).fill(-1);
  /** Quick-walk inputs of (sid, no SSID), valid with #ridTag[sid]: [TTB0 frame or -1, quickFlags]. */
  readonly #ridQuick: Float64Array = new Float64Array(2 * this.#ridTag.length);
  #lastTag = -1;
  #slotMask = 0;
  // The core IOTLB's micro-TLB (a TBU's), emptied by every drop: entry i is [page address, tag,
  // pa of the page, lane meta as an int32 in #micro32] at 4i; page -1 = empty.
  readonly #micro: Float64Array = newMicroTlb();
  readonly #micro32: Int32Array = microMetaView(this.#micro);
  /** Fast-lane micro-TLB hits mod 2^32 (off-heap int32: address embedded); a wrap adds 2^32 to #fastHits. */
  readonly #laneHits: Int32Array = new Int32Array(new ArrayBuffer(4));
  readonly #iotlb: FastIotlb;
  /**
   * Other IOTLB hits served by the fast path (each also a config-cache hit). -0: a double
   * from the start, so an increment is one float add (no Smi overflow check or retagging).
   */
  #fastHits = -0;

  constructor(memory: PhysicalMemory, registers: RegisterValues, tlbLg2: number) {
    super(registers);
    this.memory = memory;
    this.tlb = new SmmuTlb(tlbLg2, this.#micro);
    this.#iotlb = this.tlb.iotlb;
    this.#w = new Walker(memory, this.#f, this.#n);
    this.#cfg = new ConfigReader(memory, this, this.#w, this.#f, this.#n);
  }

  /** Register writes; clearing CR0.SMMUEN forgets #ridTag (the fast lane's enable check). */
  override writeRegister(name: string, value: bigint): void {
    const was = this.smmuen;
    super.writeRegister(name, value);
    if (was && !this.smmuen) this.#forget();
  }

  /** Writes an event record; true when recorded. The base model records nothing (the hardware overrides it). */
  protected recordEvent(_words: readonly bigint[]): boolean {
    return false;
  }

  /**
   * Holds a stalling fault (3.12.2): its fault, or null to terminate it. The hardware class overrides it.
   * @internal
   */
  protected holdStall(_f: FaultScratch): Fault | null {
    return null;
  }

  /** Builds (and records, unless explaining) the fault of the current scratch. */
  #raise(): Fault {
    const f = this.#f;
    // CD.S == 1 under STE.S1STALLD == 0: a stage-1 Translation-related fault stalls (3.12.2).
    if (this.#n.steps === null && this.#cfg.stallable(f)) {
      const held = this.holdStall(f);
      if (held !== null) return held;
    }
    const words = eventWords(f);
    const recorded = this.#n.steps === null && f.record ? this.recordEvent(words) : false;
    return faultOf(f, words, recorded);
  }

  // ---------------------------------------------------------------- invalidation

  /** Drops every cached configuration and translation (CFGI_ALL + TLBI_NSNH_ALL). */
  flushCaches(): void {
    this.#cfg.clear();
    this.#forget();
    this.tlb.clear();
  }

  /** Forgets the fast indexes into the config cache (the cache itself is edited by the caller). */
  #forget(): void {
    this.#lastKey = -2;
    this.#slotKT.fill(-1);
    this.#ridTag.fill(-1);
  }

  /** @internal CFGI_STE. */
  cfgiSte(sid: number): void {
    this.#cfg.dropSid(sid);
    this.#forget();
  }

  /** @internal CFGI_STE_RANGE. */
  cfgiSteRange(sid: number, range: number): void {
    this.#cfg.dropSidRange(sid, range);
    this.#forget();
  }

  /** @internal CFGI_CD. */
  cfgiCd(sid: number, ssid: number): void {
    this.#cfg.dropCd(sid, ssid);
    this.#forget();
  }

  /** @internal CFGI_CD_ALL. */
  cfgiCdAll(sid: number): void {
    this.#cfg.dropCds(sid);
    this.#forget();
  }

  /** @internal TLBI_NH_ALL. */
  tlbiNhAll(vmid: number): void {
    this.tlb.invalidateNhAll(vmid);
  }

  /** @internal TLBI_NH_ASID. */
  tlbiNhAsid(vmid: number, asid: number): void {
    this.tlb.invalidateAsid(vmid, asid);
  }

  /** @internal TLBI_NH_VA / TLBI_NH_VAA (asid -1). */
  tlbiNhVa(vmid: number, asid: number, addr: number, length: number): void {
    this.tlb.invalidateVa(vmid, asid, addr, length);
  }

  /** @internal TLBI_S12_VMALL. */
  tlbiS12Vmall(vmid: number): void {
    this.tlb.invalidateVmid(vmid);
  }

  /** @internal TLBI_S2_IPA. */
  tlbiS2Ipa(vmid: number, ipa: number, length: number): void {
    this.tlb.invalidateIpa(vmid, ipa, length);
  }

  /** @internal TLBI_NSNH_ALL, TLBI_EL2_*. */
  tlbiAll(): void {
    this.tlb.clear();
  }

  // ---------------------------------------------------------------- translate

  /** The configuration of (sid, ssid) through the config cache; null on a fault. */
  #config(sid: number, ssid: number): TransCfg | null {
    const key = sid * SID_SPAN + ssid + 1;
    if (key === this.#lastKey) {
      this.counters.configHits++;
      return this.#lastCfg;
    }
    // (a slot hit becomes the last-used config below)
    let cfg =
      this.#slotKT[(sid & this.#slotMask) * 2] === key
        ? this.#slotCfgs[sid & this.#slotMask]
        : this.#cfg.cache.get(key);
    if (cfg !== undefined) {
      this.counters.configHits++;
    } else {
      this.counters.configMisses++;
      const loaded = this.#cfg.load(sid, ssid, true);
      if (loaded === null) return null;
      cfg = loaded;
      this.#cfg.cache.set(key, cfg);
    }
    const tag = cfg.mode === MODE_TRANSLATE ? cfg.tag : -1;
    this.#lastKey = key;
    this.#lastCfg = cfg;
    this.#lastTag = tag;
    if (this.#slotMask === 0) {
      const n = 2 ** Math.min(Math.max(this.sidBits, 4), 16);
      this.#slotKT = new Float64Array(2 * n).fill(-1);
      this.#slotCfgs = new Array<TransCfg>(n).fill(cfg);
      this.#slotMask = n - 1;
    }
    if (ssid === -1 && sid <= this.#slotMask) {
      this.#ridTag[sid] = tag;
      this.#ridQuick[sid * 2] = cfg.quick ? cfg.ttb0Pfn : -1; // quick: a translating CD
      this.#ridQuick[sid * 2 + 1] = cfg.quickFlags;
    }
    const slot = sid & this.#slotMask;
    this.#slotKT[slot * 2] = key;
    this.#slotKT[slot * 2 + 1] = tag;
    this.#slotCfgs[slot] = cfg;
    return cfg;
  }

  /**
   * Translates one request (core's hot-path encoding). The IOTLB hit path does one key
   * compare, one hash probe and a few typed-array reads.
   */
  translate(sid: number, ssid: number, iova: number, access: number, out: Translation): boolean {
    // Small enough to inline: no SSID, the config's tag by StreamID (undefined past the table,
    // -1 unknown or SMMUEN 0), a micro-TLB hit; the rest is #translateMiss.
    if (ssid === -1) {
      // Page offset and micro slot from the IOVA's low 32 bits (ToInt32 keeps them for an
      // integer below 2^53), the page address as iova - offset, exact. No integer test is
      // needed: a fractional IOVA gives a fractional page address, and a negative,
      // huge or non-finite one a page no live slot holds (live slots hold pages of checked
      // addresses; an empty slot's key is NaN, which no tag, -1 included, equals).
      const lo = iova | 0;
      const off = lo & 4095;
      const x = (lo >>> 10) & MICRO_X_MASK;
      const u = this.#micro;
      if (u[x] === iova - off && u[x + 1] === this.#ridTag[sid]) {
        // The lane meta (laneMeta): bit a of 15:0 allows access a = access & 15.
        const meta = this.#micro32[(x << 1) + MICRO_META]!;
        if (((meta >>> (access & 15)) & 1) !== 0) {
          const h = this.#laneHits;
          const n = (h[0]! + 1) | 0;
          h[0] = n;
          if (n === 0) this.#fastHits += 2 ** 32;
          out.pa = u[x + 2]! + off;
          // Rights of the request's privilege: 18:16 privileged, 22:20 unprivileged.
          out.perm = (meta >>> (LANE_UNPRIV - ((access & A_PRIV) >>> 1))) & 7;
          out.sizeLg2 = meta >>> SIZE_SHIFT;
          out.fault = null;
          return true;
        }
      }
    }
    return this.#translateMiss(sid, ssid, iova, access, out);
  }

  /** translate() past a micro-TLB hit. */
  #translateMiss(sid: number, ssid: number, iova: number, access: number, out: Translation): boolean {
    if (this.smmuen) {
      // The IOTLB tag of a translating config: by StreamID without an SSID, else the last
      // one used, else the StreamID's slot.
      let tag = -1;
      if (ssid === -1 && sid <= this.#slotMask) tag = this.#ridTag[sid] ?? -1;
      else {
        const key = sid * SID_SPAN + ssid + 1;
        if (key === this.#lastKey) tag = this.#lastTag;
        else {
          const at = (sid & this.#slotMask) * 2;
          if (this.#slotKT[at] === key) tag = this.#slotKT[at + 1]!;
        }
      }
      // (a negative iova would alias the IOTLB's empty-slot marker: leave misuse to the slow path)
      if (tag >= 0 && iova >= 0 && Number.isSafeInteger(iova)) {
        const vpn = Math.floor(iova / 4096);
        const need = access & A_WRITE ? 2 : access & A_EXEC ? 4 : 1; // Perm.W / X / R
        // Micro-TLB first (direct-mapped by page; translate() probed it already for a
        // request without SSID), then the main IOTLB.
        const u = this.#micro;
        const x = (vpn & MICRO_MASK) * 4;
        if (ssid !== -1 && u[x] === vpn * 4096 && u[x + 1] === tag) {
          const meta = this.#micro32[(x << 1) + MICRO_META]!;
          if (((meta >>> (access & 15)) & 1) !== 0) {
            this.#fastHits++;
            out.pa = u[x + 2]! + (iova - vpn * 4096);
            out.perm = (meta >>> (LANE_UNPRIV - ((access & A_PRIV) >>> 1))) & 7;
            out.sizeLg2 = meta >>> SIZE_SHIFT;
            out.fault = null;
            return true;
          }
        }
        const iotlb = this.#iotlb;
        const slot = iotlb.lookup(tag, vpn);
        if (slot >= 0) {
          const d = iotlb.data;
          const b = slot << 2;
          const packed = d[b + 3]!;
          const perm = access & A_PRIV ? packed & 7 : (packed >>> 4) & 0xf;
          if ((perm & need) === need) {
            this.#fastHits++;
            iotlb.remember(slot, vpn, tag, laneMeta(packed)); // both privileges' rights: one key per tag
            out.pa = d[b + 2]! + (iova - vpn * 4096);
            out.perm = perm;
            out.sizeLg2 = packed >>> SIZE_SHIFT;
            out.fault = null;
            return true;
          }
        }
        // An IOTLB miss of a cached translating configuration: the common walk, filled.
        if (this.#walkAndFill(sid, ssid, tag, iova, access, need, out)) return true;
      }
    }
    return this.#translateSlow(sid, ssid, iova, null, access, out);
  }

  /**
   * #translateSlow's quick stage-1 walk (Walker.walkS1QuickAt) of a request whose config
   * is cached with `tag` (by StreamID: no config object read), without the misuse checks
   * (the caller's) or fault scratch; false with nothing changed, else #translateSlow runs.
   */
  #walkAndFill(
    sid: number,
    ssid: number,
    tag: number,
    iova: number,
    access: number,
    need: number,
    out: Translation,
  ): boolean {
    // A quick config's range: TTB0 with T0SZ 16, VA 47:0 (a number is below 2^53: VA[55] = 0).
    if (iova >= TTB0_QUICK_END) return false;
    const w = this.#w;
    if (ssid === -1 && sid <= this.#slotMask) {
      // (the caller found the tag in #ridTag: #ridQuick holds the walk's inputs)
      const q = this.#ridQuick;
      const pfn = q[sid * 2]!;
      if (pfn < 0 || !w.walkS1QuickAt(pfn, q[sid * 2 + 1]!, iova, access, need)) return false;
    } else {
      const key = sid * SID_SPAN + ssid + 1;
      let cfg: TransCfg | undefined;
      if (key === this.#lastKey) cfg = this.#lastCfg;
      else if (this.#slotKT[(sid & this.#slotMask) * 2] === key) cfg = this.#slotCfgs[sid & this.#slotMask];
      if (cfg === undefined || !w.walkS1Quick(cfg, iova, access, need)) return false;
      this.#lastKey = key;
      this.#lastCfg = cfg;
      this.#lastTag = tag;
    }
    const c = this.counters;
    c.configHits++;
    c.iotlbMisses++;
    c.walks++;
    this.tlb.insert(tag, iova, w.oa, w.permP, w.permU, w.lg2, w.global);
    out.pa = w.oa;
    out.perm = access & A_PRIV ? w.permP : w.permU;
    out.sizeLg2 = w.lg2;
    out.fault = null;
    return true;
  }

  /** Translates an address of any width (TTB1 VAs); never uses the IOTLB. */
  translateBigInto(sid: number, ssid: number, iova: bigint, access: number, out: Translation): boolean {
    return this.#translateSlow(sid, ssid, 0, iova, access, out);
  }

  #translateSlow(
    sid: number,
    ssid: number,
    iova: number,
    big: bigint | null,
    access: number,
    out: Translation,
  ): boolean {
    // Misuse, refused the same way by translate, translateBig and explain (core IommuError).
    if (!Number.isInteger(sid) || sid < 0 || sid >= TWO32)
      throw new IommuError("EINVAL", `StreamID ${sid} is not a 32-bit value`, { rid: sid });
    if (!Number.isInteger(ssid) || ssid < -1 || ssid >= 2 ** 20)
      throw new IommuError("EINVAL", `SubstreamID ${ssid} is not -1 or a 20-bit value`, { pasid: ssid });
    if (big === null && (!Number.isSafeInteger(iova) || iova < 0))
      throw new IommuError("EINVAL", `iova ${iova} is not an integer below 2^53`, { iova });
    if (big !== null && (typeof big !== "bigint" || big < 0n || big >= 1n << 64n))
      throw new IommuError("EINVAL", `iova ${big} is not a 64-bit value`, { iova: String(big) });
    this.#f.sid = sid;
    this.#f.ssid = ssid;
    this.#f.input = iova;
    this.#f.inputBig = big;
    this.#f.access = access;
    const need = access & Access.WRITE ? Perm.W : access & Access.EXEC ? Perm.X : Perm.R;
    if (!this.smmuen) {
      // SMMUEN=0: GBPA decides (6.3.14).
      if (this.gbpaAbort) {
        out.fault = blockedFault(this.#f, "GBPA_ABORT");
        return false;
      }
      return this.#bypass(iova, big, out, false);
    }
    const cfg = this.#n.steps !== null ? this.#cfg.load(sid, ssid, false) : this.#config(sid, ssid);
    if (cfg === null) {
      out.fault = this.#raise();
      return false;
    }
    if (cfg.mode === MODE_ABORT) {
      out.fault = blockedFault(this.#f, "STE_ABORT");
      return false;
    }
    if (cfg.mode === MODE_BYPASS) return this.#bypass(iova, big, out, true);
    // Input address: stage 1 selects TTB0/TTB1 from the top bits (3.4.1, D8.1.4).
    let half = 0;
    let va = iova;
    if (cfg.s1) {
      if (big === null) {
        // A number is below 2^53: VA[55] = 0, so only TTB0's range (or the gap above it) applies.
        if (cfg.epd0 || va >= (POW2[64 - cfg.t0sz] ?? 2 ** (64 - cfg.t0sz))) {
          this.#n.step("S1", null, "fault: F_TRANSLATION (EPD0, or above TTB0's range)");
          return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
        }
      } else {
        // VA[55] selects the half; with TBIx the top byte is replaced by VA[55]'s sign extension.
        const upper = ((big >> 55n) & 1n) === 1n;
        const tbi = upper ? cfg.tbi & 2 : cfg.tbi & 1;
        let top = tbi ? BigInt.asUintN(56, big) : big;
        if (tbi && upper) top |= 0xffn << 56n;
        if (top < 1n << BigInt(64 - cfg.t0sz)) {
          va = Number(top);
          if (cfg.epd0) return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
        } else if (top >= (1n << 64n) - (1n << BigInt(64 - cfg.t1sz))) {
          if (cfg.epd1) return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
          half = 1;
          va = Number(top & ((1n << BigInt(64 - cfg.t1sz)) - 1n));
        } else {
          this.#n.step("S1", null, "fault: F_TRANSLATION (between the TTB0 and TTB1 ranges)");
          return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
        }
      }
    } else {
      // Stage 1 bypassed: the input must fit the IAS (3.4.3), then it is the IPA.
      if (big !== null) {
        if (big >= 1n << BigInt(this.oas)) return this.#fail(EventId.F_ADDR_SIZE, false, out);
        va = Number(big);
      } else if (iova >= (POW2[this.oas] ?? 2 ** this.oas))
        return this.#fail(EventId.F_ADDR_SIZE, false, out);
    }
    this.counters.iotlbMisses++;
    this.counters.walks++;
    const w = this.#w;
    const ok = cfg.s1 ? w.walkS1(cfg, half, va, access, need) : w.walkS2Only(cfg.ste, va, need);
    if (!ok) {
      if (this.#f.id >= EventId.F_TRANSLATION && this.#f.s2 === 0 && this.#f.id !== EventId.F_WALK_EABT)
        this.#f.addr = 0;
      out.fault = this.#raise();
      return false;
    }
    if (this.#n.steps === null && big === null) {
      this.tlb.insert(cfg.tag, iova, w.oa, w.permP, w.permU, w.lg2, w.global);
    }
    out.pa = w.oa;
    out.perm = access & Access.PRIV ? w.permP : w.permU;
    out.sizeLg2 = w.lg2;
    out.fault = null;
    return true;
  }

  #fail(id: number, record: boolean, out: Translation): false {
    this.#f.set(id, 0, EventClass.IN, 0, record);
    out.fault = this.#raise();
    return false;
  }

  /** Bypass: the input is the output; beyond the OAS it is an address-size fault (no PA there). */
  #bypass(iova: number, big: bigint | null, out: Translation, record: boolean): boolean {
    if (big !== null) {
      if (big >= 1n << BigInt(this.oas)) return this.#fail(EventId.F_ADDR_SIZE, record, out);
      iova = Number(big);
    } else if (iova >= (POW2[this.oas] ?? 2 ** this.oas)) return this.#fail(EventId.F_ADDR_SIZE, record, out);
    out.pa = iova;
    out.perm = Perm.R | Perm.W | Perm.X;
    out.sizeLg2 = 12;
    out.fault = null;
    return true;
  }

  /** The walk of one request, step by step, without touching caches, memory or the event queue. */
  explain(sid: number, ssid: number, iova: bigint, access: number): WalkStep[] {
    const steps: WalkStep[] = [];
    this.#n.steps = steps;
    const out: Translation = { pa: 0, perm: 0, sizeLg2: 0, fault: null };
    const saved = { ...this.counters };
    try {
      const ok = this.#translateSlow(sid, ssid, 0, iova, access, out);
      steps.push(resultStep(ok, out));
    } finally {
      this.#n.steps = null;
      Object.assign(this.counters, saved);
    }
    return steps;
  }

  /** The decoded STE (and CD when stage 1 is on) of a StreamID, for dumps; no caches touched. */
  describe(sid: number, ssid = -1): WalkStep[] {
    const steps: WalkStep[] = [];
    this.#n.steps = steps;
    try {
      this.#f.sid = sid;
      this.#f.ssid = ssid;
      this.#cfg.load(sid, ssid, false);
    } finally {
      this.#n.steps = null;
    }
    return steps;
  }

  /** The counters, with the fast path's hits folded in. */
  snapshotCounters(): HwCounters {
    const c = this.counters;
    const hits = this.#fastHits + (this.#laneHits[0]! >>> 0);
    return { ...c, iotlbHits: c.iotlbHits + hits, configHits: c.configHits + hits };
  }
}
