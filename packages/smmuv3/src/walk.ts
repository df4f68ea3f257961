/**
 * The VMSAv8-64 walks an SMMU does for a request (ARM IHI 0070 3.4; Arm ARM DDI 0487
 * D8.2-D8.4): stage 1 from a CD's TTB0/TTB1 (5.4), stage 2 from an STE's S2TTB (5.2),
 * and nested, where every stage-1 table address and the stage-1 output are IPAs walked
 * at stage 2 (3.4.2, CLASS=TT and CLASS=IN). Also the decoded configuration a walk runs
 * with (`SteCfg`, `TransCfg`, as `internal/config.ts` builds them from the STE and CD).
 *
 * Levels are the Arm ARM's lookup levels 0-3 unchanged (level 3 holds pages; the 4K
 * granule starts at level 0 for 48 input bits, 64K at level 1 for 52), with the start
 * level from TxSZ (stage 1) or S2SL0 (stage 2, D8.2): `levelShift(g, lvl)`
 * of `format/lpae-pte.ts` is the input bit a level's index starts at. Hot-path rules:
 * no allocation, no closure, no BigInt; results go to the walker's fields; a fault sets
 * the shared `FaultScratch` and returns false. Hostile tables end in a fault: at most
 * four levels, every fetch checked against the memory map (null page = external abort).
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { Access, Perm } from "@iommu-kit/core";
import type { Narrator } from "./explain.ts";
import { EventClass, EventId } from "./format/event.ts";
import { blockAllowed, levelShift } from "./format/lpae-pte.ts";
import type { FaultScratch } from "./internal/fault.ts";
import { POW2, TWO32 } from "./internal/words.ts";

/** Translation modes of a decoded configuration. */
export const MODE_ABORT = 0;
export const MODE_BYPASS = 1;
export const MODE_TRANSLATE = 2;

/** STE.Config kinds after decoding. */
export const STE_ABORT = 0;
export const STE_BYPASS = 1;
export const STE_S1 = 2;
export const STE_S2 = 3;
export const STE_NESTED = 4;

/** The default of SteCfg.raw until a fetch sets the words read (shared, never written). */
const NO_WORDS = new Uint32Array(16);

/** A decoded STE (5.2). */
export class SteCfg {
  kind: number = STE_ABORT;
  s1Fmt = 0;
  ctxPtr = 0;
  cdMax = 0;
  dss = 0;
  vmid = 0;
  s2g = 12;
  s2ias = 48;
  s2start = 0;
  s2ttb = 0;
  s2ps = 48;
  s2affd = false;
  s2ha = false;
  s2hd = false;
  s2r = false;
  raw: Uint32Array = NO_WORDS;
}

/** The default of a TransCfg's STE until the config room sets the fetched one (shared, never written). */
const NO_STE = new SteCfg();

/** A decoded (STE, CD) pair: what one (StreamID, SubstreamID) translates with. */
export class TransCfg {
  mode: number = MODE_ABORT;
  // The fields a quick miss reads come first, in one cache line of the object (a miss of
  // a rarely used StreamID's config pays for each line it touches).
  /**
   * Set by the CD decode when the quick stage-1 walk (Walker.walkS1Quick) applies: TTB0
   * enabled with a 4K granule and T0SZ 16 (levels 0-3), no stage 2, an IPS of at most
   * 48 bits. One flag read on the miss path instead of six field tests.
   */
  quick = false;
  /** TTB0's frame number (a quick walk's level-0 table; TTB0 is 4K aligned there, 5.4). */
  ttb0Pfn = 0;
  /**
   * A quick walk's other inputs (Walker.walkS1QuickAt): in 15:0 OA bits 47:IPS as they sit
   * in a descriptor's high word (the address-size test), HAD0 [16], WXN [17], PAN [18].
   */
  quickFlags = 0;
  s1 = false;
  s2 = false;
  tag = 0;
  vmid = 0;
  asid = 0;
  sid = 0;
  ssid = -1;
  ste: SteCfg = NO_STE;
  // Stage 1 (CD, 5.4).
  t0sz = 16;
  tg0 = 12;
  epd0 = false;
  ttb0 = 0;
  t1sz = 16;
  tg1 = 12;
  epd1 = true;
  ttb1 = 0;
  ips = 48;
  affd = false;
  ha = false;
  hd = false;
  had0 = false;
  had1 = false;
  wxn = false;
  uwxn = false;
  pan = false;
  tbi = 0;
  r = false;
}

// TransCfg.quickFlags bits above the OA mask.
const Q_HAD0 = 0x1_0000;
const Q_WXN = 0x2_0000;
const Q_PAN = 0x4_0000;

/** Fills the quick-walk fields of a decoded stage-1 config (see TransCfg.quick). */
export function setQuick(cfg: TransCfg): void {
  cfg.quick = cfg.s1 && !cfg.s2 && !cfg.epd0 && cfg.tg0 === 12 && cfg.t0sz === 16 && cfg.ips <= 48;
  cfg.ttb0Pfn = Math.floor(cfg.ttb0 / 4096);
  const oaHi = cfg.ips >= 48 ? 0 : 0xffff & ~((1 << (cfg.ips - 32)) - 1);
  cfg.quickFlags = oaHi | (cfg.had0 ? Q_HAD0 : 0) | (cfg.wxn ? Q_WXN : 0) | (cfg.pan ? Q_PAN : 0);
}

/**
 * log2 of the entries one Contiguous hint [52] spans (DDI 0487 D8.7.1): 4K granule 16 at
 * every level; 16K 128 at level 3 and 32 at level 2; 64K 32. The walk reports (and the
 * IOTLB caches) the whole run as one region; a misprogrammed run is the spec's
 * CONSTRAINED UNPREDICTABLE, here each page still translates through its own descriptor.
 */
function contiguousLg2(g: number, lvl: number): number {
  if (g === 12) return 4;
  if (g === 14) return lvl === 3 ? 7 : 5;
  return 5;
}

/**
 * The region a Contiguous leaf reports: the whole run when the input and output sit at the
 * same offset in it, else (a misprogrammed run, CONSTRAINED UNPREDICTABLE) the leaf alone,
 * so a reported region always holds the output at the input's offset.
 */
function runLg2(shift: number, runLg2: number, input: number, output: number): number {
  const size = POW2[shift + runLg2] ?? 2 ** (shift + runLg2);
  return input % size === output % size ? shift + runLg2 : shift;
}

/** The stage-1, stage-2 and nested walker. */
export class Walker {
  readonly memory: PhysicalMemory;
  readonly #f: FaultScratch;
  readonly #n: Narrator;
  // Results of the last successful walk (stage 1 or nested: walkS1; stage 2 only: walkS2Only).
  oa = 0;
  lg2 = 12;
  permP = 0;
  permU = 0;
  global = false;
  // Results of the last stage-2 walk.
  s2Oa = 0;
  s2Lg2 = 12;
  s2Perm = 0;

  constructor(memory: PhysicalMemory, fault: FaultScratch, narrator: Narrator) {
    this.memory = memory;
    this.#f = fault;
    this.#n = narrator;
  }

  /** Stage-2 walk of `ipa` needing `need` perms; sets s2Oa/s2Lg2/s2Perm or the fault (S2=1, `cls`). */
  walkS2(ste: SteCfg, ipa: number, need: number, cls: number): boolean {
    const rec = ste.s2r;
    if (ipa >= (POW2[ste.s2ias] ?? 2 ** ste.s2ias)) {
      this.#n.step("S2", null, `fault: F_TRANSLATION (IPA beyond 2^${ste.s2ias})`);
      return this.#f.set(EventId.F_TRANSLATION, 1, cls, ipa, rec);
    }
    const g = ste.s2g;
    const ps = POW2[ste.s2ps] ?? 2 ** ste.s2ps;
    let table = ste.s2ttb;
    for (let lvl = ste.s2start; lvl <= 3; lvl++) {
      const shift = levelShift(g, lvl);
      const bits = lvl === ste.s2start ? ste.s2ias - shift : g - 3;
      const idx = Math.floor(ipa / (POW2[shift] ?? 2 ** shift)) % (POW2[bits] ?? 2 ** bits);
      const da = table + idx * 8;
      const page = this.memory.readPage(Math.floor(da / 4096));
      if (page === null) {
        this.#n.step(`S2 L${lvl}`, da, "fault: F_WALK_EABT");
        return this.#f.set(EventId.F_WALK_EABT, 1, cls, da, true);
      }
      const wi = (da % 4096) >>> 2;
      const lo = page[wi]!;
      const hi = page[wi + 1]!;
      if (this.#n.steps !== null)
        this.#n.step(
          `S2 L${lvl}`,
          da,
          (lo & 1) === 0 ? "invalid" : (lo & 2) !== 0 && lvl < 3 ? "table" : "leaf",
          [`0x${hi.toString(16).padStart(8, "0")}${lo.toString(16).padStart(8, "0")}`],
        );
      if (
        (lo & 1) === 0 ||
        (lvl === 3 && (lo & 2) === 0) ||
        (lvl < 3 && (lo & 2) === 0 && !blockAllowed(g, lvl))
      ) {
        return this.#f.set(EventId.F_TRANSLATION, 1, cls, ipa, rec);
      }
      let addr = (hi & 0xffff) * TWO32;
      if (g === 16 && ste.s2ps > 48) addr += ((lo >>> 12) & 0xf) * 2 ** 48; // LPA: OA[51:48] in [15:12]
      if (lvl < 3 && (lo & 2) !== 0) {
        table = addr + (lo >>> g) * (POW2[g] ?? 2 ** g);
        if (table >= ps) return this.#f.set(EventId.F_ADDR_SIZE, 1, cls, ipa, rec);
        continue;
      }
      const oa = addr + (lo >>> shift) * (POW2[shift] ?? 2 ** shift);
      if (oa >= ps) return this.#f.set(EventId.F_ADDR_SIZE, 1, cls, ipa, rec);
      let lo2 = lo;
      if ((lo & 0x400) === 0) {
        if (ste.s2ha)
          lo2 |= 0x400; // hardware access flag update (HTTU; explain reports it without writing)
        else if (!ste.s2affd) return this.#f.set(EventId.F_ACCESS, 1, cls, ipa, rec);
      }
      let perm =
        ((lo2 >>> 6) & 1 ? Perm.R : 0) | ((lo2 >>> 7) & 1 ? Perm.W : 0) | ((hi >>> 22) & 1 ? 0 : Perm.X);
      if ((need & Perm.W) !== 0 && (perm & Perm.W) === 0 && ste.s2hd && ((hi >>> 19) & 1) === 1) {
        lo2 |= 0x80; // DBM: writable-clean becomes dirty (S2AP[1] = 1)
        perm |= Perm.W;
      }
      if ((perm & need) !== need) return this.#f.set(EventId.F_PERMISSION, 1, cls, ipa, rec);
      if (lo2 !== lo && this.#n.steps === null) {
        const wp = this.memory.writePage(Math.floor(da / 4096));
        if (wp !== null) wp[wi] = lo2;
      }
      this.s2Oa = oa + (ipa % (POW2[shift] ?? 2 ** shift));
      this.s2Lg2 = (hi >>> 20) & 1 ? runLg2(shift, contiguousLg2(g, lvl), ipa, this.s2Oa) : shift;
      this.s2Perm = perm;
      return true;
    }
    return this.#f.set(EventId.F_TRANSLATION, 1, cls, ipa, rec);
  }

  /**
   * Stage-1 walk of `va` (an offset below 2^(64-TxSZ) in the selected half) for `access`;
   * then stage 2 of the output when nested. Sets oa/lg2/permP/permU/global.
   */
  walkS1(cfg: TransCfg, half: number, va: number, access: number, need: number): boolean {
    // The common case first: TTB0, 4K granule, 48-bit input (start level 0), no stage 2.
    if (half === 0 && this.walkS1Quick(cfg, va, access, need)) return true;
    const rec = cfg.r;
    const tsz = half === 0 ? cfg.t0sz : cfg.t1sz;
    const g = half === 0 ? cfg.tg0 : cfg.tg1;
    const had = half === 0 ? cfg.had0 : cfg.had1;
    const inBits = 64 - tsz;
    const start = 4 - Math.ceil((inBits - g) / (g - 3));
    const topBits = inBits - levelShift(g, start);
    const ttb0 = half === 0 ? cfg.ttb0 : cfg.ttb1;
    // TTBx is aligned to the start-level table (5.4 TTB0/TTB1; DDI 0487 TTBR0_EL1.BADDR: bits
    // [x-1:0] of a 2^x-byte table are zero); only a 52-bit IPS (OA[51:48] in TTB[5:2]) needs 64.
    const tableLg2 = topBits + 3;
    const alignLg2 = cfg.ips === 52 ? Math.max(6, tableLg2) : Math.max(4, tableLg2);
    let table = ttb0 - (ttb0 % (POW2[alignLg2] ?? 2 ** alignLg2));
    const oaLimit = POW2[cfg.ips] ?? 2 ** cfg.ips;
    const nested = cfg.s2;
    let apTable = 0;
    let uxnTable = 0;
    let pxnTable = 0;
    for (let lvl = start; lvl <= 3; lvl++) {
      const shift = levelShift(g, lvl);
      const bits = lvl === start ? topBits : g - 3;
      const idx = Math.floor(va / (POW2[shift] ?? 2 ** shift)) % (POW2[bits] ?? 2 ** bits);
      const dIpa = table + idx * 8;
      let da = dIpa;
      if (nested) {
        if (!this.walkS2(cfg.ste, dIpa, Perm.R, EventClass.TT)) return false;
        da = this.s2Oa;
      }
      const page = this.memory.readPage(Math.floor(da / 4096));
      if (page === null) {
        this.#n.step(`S1 L${lvl}`, da, "fault: F_WALK_EABT");
        return this.#f.set(EventId.F_WALK_EABT, 0, EventClass.TT, da, true);
      }
      const wi = (da % 4096) >>> 2;
      const lo = page[wi]!;
      const hi = page[wi + 1]!;
      if (this.#n.steps !== null)
        this.#n.step(
          `S1 L${lvl}`,
          da,
          (lo & 1) === 0 ? "invalid" : (lo & 2) !== 0 && lvl < 3 ? "table" : `leaf 2^${shift}`,
          [`0x${hi.toString(16).padStart(8, "0")}${lo.toString(16).padStart(8, "0")}`],
          { index: idx },
        );
      if (
        (lo & 1) === 0 ||
        (lvl === 3 && (lo & 2) === 0) ||
        (lvl < 3 && (lo & 2) === 0 && !blockAllowed(g, lvl))
      ) {
        return this.#f.set(EventId.F_TRANSLATION, 0, EventClass.IN, 0, rec);
      }
      let addr = (hi & 0xffff) * TWO32;
      if (g === 16 && cfg.ips > 48) addr += ((lo >>> 12) & 0xf) * 2 ** 48;
      if (lvl < 3 && (lo & 2) !== 0) {
        table = addr + (lo >>> g) * (POW2[g] ?? 2 ** g);
        if (table >= oaLimit) return this.#f.set(EventId.F_ADDR_SIZE, 0, EventClass.IN, 0, rec);
        if (!had) {
          pxnTable |= (hi >>> 27) & 1; // PXNTable [59]
          uxnTable |= (hi >>> 28) & 1; // UXNTable [60]
          apTable |= (hi >>> 29) & 3; // APTable [62:61]
        }
        continue;
      }
      const oa = addr + (lo >>> shift) * (POW2[shift] ?? 2 ** shift);
      if (oa >= oaLimit) return this.#f.set(EventId.F_ADDR_SIZE, 0, EventClass.IN, 0, rec);
      let lo2 = lo;
      if ((lo & 0x400) === 0) {
        if (cfg.ha)
          lo2 |= 0x400; // HTTU (explain reports it without writing)
        else if (!cfg.affd) return this.#f.set(EventId.F_ACCESS, 0, EventClass.IN, 0, rec);
      }
      // AP[2:1] (D8.4.1): AP[1] = EL0 access, AP[2] = read-only; APTable[1] no write, APTable[0] no EL0.
      const el0 = ((lo2 >>> 6) & 1) === 1 && (apTable & 1) === 0;
      let ro = ((lo2 >>> 7) & 1) === 1 || (apTable & 2) !== 0;
      if (ro && (access & Access.WRITE) !== 0 && cfg.hd && ((hi >>> 19) & 1) === 1 && (apTable & 2) === 0) {
        lo2 &= ~0x80; // DBM: writable-clean becomes dirty (AP[2] = 0)
        ro = false;
      }
      const pxn = ((hi >>> 21) & 1) | pxnTable;
      const uxn = ((hi >>> 22) & 1) | uxnTable;
      const w = ro ? 0 : Perm.W;
      // EL1 may not execute EL0-writable memory (D8.4.3); WXN makes writable memory XN.
      let permP = Perm.R | w | (pxn || (el0 && !ro) || (cfg.wxn && !ro) ? 0 : Perm.X);
      if (cfg.pan && el0) permP &= Perm.X; // PAN: no privileged data access to EL0 memory
      const permU = el0
        ? Perm.R | w | (uxn || (cfg.wxn && !ro) ? 0 : Perm.X) // UWXN is IGNORED for VMSAv8-64 (5.4)
        : uxn
          ? 0
          : Perm.X;
      const perm = access & Access.PRIV ? permP : permU;
      if ((perm & need) !== need) return this.#f.set(EventId.F_PERMISSION, 0, EventClass.IN, 0, rec);
      if (lo2 !== lo && this.#n.steps === null) {
        const wp = this.memory.writePage(Math.floor(da / 4096));
        if (wp !== null) wp[wi] = lo2;
      }
      const out = oa + (va % (POW2[shift] ?? 2 ** shift));
      this.global = ((lo2 >>> 11) & 1) === 0;
      const region = (hi >>> 20) & 1 ? runLg2(shift, contiguousLg2(g, lvl), va, out) : shift;
      if (nested) {
        if (!this.walkS2(cfg.ste, out, need, EventClass.IN)) return false;
        this.oa = this.s2Oa;
        this.lg2 = Math.min(region, this.s2Lg2);
        this.permP = permP & this.s2Perm;
        this.permU = permU & this.s2Perm;
      } else {
        this.oa = out;
        this.lg2 = region;
        this.permP = permP;
        this.permU = permU;
      }
      return true;
    }
    return this.#f.set(EventId.F_TRANSLATION, 0, EventClass.IN, 0, rec);
  }

  /**
   * walkS1 of TTB0 for the common configuration (see #walkS1Fast), or false with
   * nothing changed: the caller then walks with walkS1.
   */
  walkS1Quick(cfg: TransCfg, va: number, access: number, need: number): boolean {
    return cfg.quick && this.walkS1QuickAt(cfg.ttb0Pfn, cfg.quickFlags, va, access, need);
  }

  /**
   * walkS1Quick of a quick config given by its TTB0 frame and TransCfg.quickFlags (a
   * caller holding them by StreamID in typed arrays touches no config object).
   */
  walkS1QuickAt(ttb0Pfn: number, flags: number, va: number, access: number, need: number): boolean {
    return this.#n.steps === null && this.#walkS1Fast(ttb0Pfn, flags, va, access, need);
  }

  /**
   * The stage-1 walk of the common configuration (TTB0, 4K granule, T0SZ 16: levels 0-3,
   * no stage 2, no explain) for a translation that needs nothing written: each level's
   * index from the VA's 32-bit halves with constant shifts (VA 47:39, 38:30, 29:21,
   * 20:12), each descriptor's two words read from its page once, the next table's frame
   * from the descriptor's halves (OA 47:12). True with the results set; false for
   * anything else (an invalid, block or contiguous descriptor, an output beyond the
   * IPS, AF = 0, a write to a read-only page, a permission fault), which the general
   * walk then does from the start: reads have no side effects, so its result stands.
   */
  #walkS1Fast(ttb0Pfn: number, flags: number, va: number, access: number, need: number): boolean {
    const vLo = va >>> 0;
    const vHi = (va - vLo) / TWO32;
    const memory = this.memory;
    // OA bits at or above the IPS, in the high word: an address-size fault.
    const oaHi = flags & 0xffff;
    const p0 = memory.readPage(ttb0Pfn);
    if (p0 === null) return false;
    const w0 = (vHi >>> 6) & 0x3fe;
    const lo0 = p0[w0]!;
    const hi0 = p0[w0 + 1]!;
    if ((lo0 & 3) !== 3 || (hi0 & oaHi) !== 0) return false;
    const p1 = memory.readPage((hi0 & 0xffff) * 1048576 + (lo0 >>> 12));
    if (p1 === null) return false;
    const w1 = (((vHi << 2) | (vLo >>> 30)) & 511) << 1;
    const lo1 = p1[w1]!;
    const hi1 = p1[w1 + 1]!;
    if ((lo1 & 3) !== 3 || (hi1 & oaHi) !== 0) return false;
    const p2 = memory.readPage((hi1 & 0xffff) * 1048576 + (lo1 >>> 12));
    if (p2 === null) return false;
    const w2 = (vLo >>> 20) & 0x3fe;
    const lo2 = p2[w2]!;
    const hi2 = p2[w2 + 1]!;
    if ((lo2 & 3) !== 3 || (hi2 & oaHi) !== 0) return false;
    const p3 = memory.readPage((hi2 & 0xffff) * 1048576 + (lo2 >>> 12));
    if (p3 === null) return false;
    const w3 = (vLo >>> 11) & 0x3fe;
    const lo = p3[w3]!;
    const hi = p3[w3 + 1]!;
    // A page descriptor with AF set, no Contiguous hint, its OA inside the IPS.
    if ((lo & 0x403) !== 0x403 || ((hi >>> 20) & 1) !== 0 || (hi & oaHi) !== 0) return false;
    // Table attributes (D8.3.1): PXNTable [59], UXNTable [60], APTable [62:61], unless HAD.
    const tbl = flags & Q_HAD0 ? 0 : hi0 | hi1 | hi2;
    const pxnTable = (tbl >>> 27) & 1;
    const uxnTable = (tbl >>> 28) & 1;
    const apTable = (tbl >>> 29) & 3;
    // As the general walk: AP[2:1] (D8.4.1), EL1 not executing EL0-writable memory
    // (D8.4.3), WXN, PAN.
    const el0 = ((lo >>> 6) & 1) === 1 && (apTable & 1) === 0;
    const ro = ((lo >>> 7) & 1) === 1 || (apTable & 2) !== 0;
    // A write to a read-only page faults or, with DBM, is written: the general walk's.
    if (ro && (access & Access.WRITE) !== 0) return false;
    const pxn = ((hi >>> 21) & 1) | pxnTable;
    const uxn = ((hi >>> 22) & 1) | uxnTable;
    const w = ro ? 0 : Perm.W;
    const wxn = (flags & Q_WXN) !== 0;
    let permP = Perm.R | w | (pxn || (el0 && !ro) || (wxn && !ro) ? 0 : Perm.X);
    if ((flags & Q_PAN) !== 0 && el0) permP &= Perm.X;
    const permU = el0 ? Perm.R | w | (uxn || (wxn && !ro) ? 0 : Perm.X) : uxn ? 0 : Perm.X;
    const perm = access & Access.PRIV ? permP : permU;
    if ((perm & need) !== need) return false;
    this.oa = (hi & 0xffff) * TWO32 + (((lo & 0xfffff000) | (vLo & 0xfff)) >>> 0);
    this.lg2 = 12;
    this.permP = permP;
    this.permU = permU;
    this.global = ((lo >>> 11) & 1) === 0;
    return true;
  }

  /** A stage-2-only walk (STE Config S2, or S1DSS bypass under nested): results as a full walk's. */
  walkS2Only(ste: SteCfg, ipa: number, need: number): boolean {
    if (!this.walkS2(ste, ipa, need, EventClass.IN)) return false;
    this.oa = this.s2Oa;
    this.lg2 = this.s2Lg2;
    this.permP = this.s2Perm;
    this.permU = this.s2Perm;
    this.global = false;
    return true;
  }
}
