/**
 * The spec-faithful page walker: second-stage (legacy and scalable), first-stage
 * (IA-32e 4/5-level) and nested walks over tables in physical memory, with the spec's
 * fault reasons (Intel VT-d spec 3.6-3.8, 7.1.3) and accessed/dirty updates.
 *
 * Hot-path rules: no allocation, no closures, no BigInt. Results go to the walker's
 * own fields; a walk returns 0 or the fault reason. Hostile tables end in a fault:
 * every table address comes from an entry masked to 52 bits, every fetch checks for
 * a bus error, and every walk has at most five levels (the spec's widest table, 3.6 /
 * 3.7: config.ts admits AW 1-3 and FSPM 0-1 only, and walk() refuses anything deeper).
 */

import type { PhysicalMemory, WalkStep } from "@iommu-kit/core";
import { Access, Perm } from "@iommu-kit/core";
import { Fr } from "./format/fault-record.ts";
import { FsPte } from "./format/fs-pte.ts";
import { entryAddr, SsPte } from "./format/ss-pte.ts";

/** How a resolved configuration translates (from TT or PGTT). */
export const Kind = {
  PASS_THROUGH: 0,
  SECOND_STAGE: 1,
  FIRST_STAGE: 2,
  NESTED: 3,
} as const;

/**
 * A resolved device/PASID configuration: what the context (and PASID) entries say,
 * as the context and PASID caches hold it. Immutable once built.
 */
export interface Cfg {
  readonly sid: number;
  /** PASID of the walk (RID_PASID for requests without PASID in scalable mode; 0 in legacy). */
  readonly pasid: number;
  readonly did: number;
  /** IOTLB tag: did * 2^20 + pasid. */
  readonly tag: number;
  readonly kind: number;
  readonly legacy: boolean;
  /** Fault processing disabled by any entry on the way (context, PASID directory, PASID entry). */
  readonly fpd: boolean;
  readonly ssRoot: number;
  readonly ssLevels: number;
  /** Second-stage execute enable (X honoured; otherwise fetches need R). */
  readonly ssee: boolean;
  /** Second-stage A/D enable. */
  readonly ssade: boolean;
  readonly fsRoot: number;
  readonly fsLevels: number;
  readonly sre: boolean;
  readonly wpe: boolean;
  readonly eafe: boolean;
  /** Page-walk snoop (legacy: always). */
  readonly pwsnp: boolean;
  /** Privilege of requests without PASID (context RID_PRIV). */
  readonly ridPriv: boolean;
}

/** Pow2[k] = 2^k for k <= 64. */
const POW2: Float64Array = Float64Array.from({ length: 65 }, (_, k) => 2 ** k);
/** Interrupt address range (spec 3.15): 0xFEE0_0000 - 0xFEEF_FFFF. */
const INTR_BASE = 0xfee00000;
const INTR_END = 0xfef00000;
/** TM (bit 62) of a second-stage leaf, in the high half: Reserved(0) (spec 9.8, since rev 3.2). */
const SS_TM_HI = 0x40000000;
/** PAT (bit 12) of a first-stage 2 MiB / 1 GiB leaf (spec 9.7): not an address bit there. */
const FS_PAT_LARGE = 0x1000;
const RWX = Perm.R | Perm.W | Perm.X;
const SS_RW = SsPte.R | SsPte.W;
const SS_PS = SsPte.PS;
const SS_D = SsPte.D;
/** The spec's deepest tables: 5 levels (spec 3.6 five-level first stage, 3.7 AW = 3). */
const MAX_LEVELS = 5;

/** Hardware parameters the walker needs. */
export interface WalkerParams {
  /** Host address width in bits (output addresses above it are reserved). */
  readonly haw: number;
  /** CAP.SLLPS bit 0 / bit 1. */
  readonly ss2M: boolean;
  readonly ss1G: boolean;
  /** CAP.FS1GP. */
  readonly fs1G: boolean;
  /** ECAP.SC: legacy-mode SNP (leaf bit 11) is reserved without it. */
  readonly snoopControl: boolean;
}

/** The walker of one hardware unit. Not reentrant. */
export class PageWalker {
  readonly memory: PhysicalMemory;
  /** Output of the last successful walk: physical address of the requested byte. */
  pa = 0;
  /** log2 of the contiguous region around the address (smallest leaf over the stages). */
  sizeLg2 = 12;
  /** Perm bits granted to a user (non-privileged) request. */
  permUser = 0;
  /** Perm bits granted to a supervisor request. */
  permSup = 0;
  /** A later write must walk again (a D bit still has to be set). */
  writeNeedsWalk = false;
  /** Level where the last fault was detected (-1 = none or not level-specific). */
  faultLevel = -1;
  /** The last fault was a not-present entry (legacy reports it as a missing right, 0x5/0x6). */
  notPresent = false;

  readonly #hiRsvd: number;
  /** #hiRsvd plus TM (bit 62 = bit 30 of the high half): reserved in leaves (spec 9.8). */
  readonly #ssHiRsvdLeaf: number;
  readonly #ssLoRsvdNonLeaf: Int32Array;
  /** walkSs4's non-leaf mask: SNP when reserved, and PS (a superpage goes to walk()). */
  readonly #ssTableRsvd: number;
  /** walkSs4's legacy 4 KiB leaf mask (scalable-mode leaves ignore bit 11). */
  readonly #ssLeafRsvdLegacy: number;
  readonly #ssLoRsvdLeaf: Int32Array;
  /** Scalable-mode leaves: bit 11 is ignored (snooping is the PASID entry's PGSNP, spec 9.6). */
  readonly #ssLoRsvdLeafSm: Int32Array;
  readonly #ssLeafOk: Uint8Array;
  readonly #fsLeafOk: Uint8Array;
  readonly #fsLoRsvdLeaf: Int32Array;
  // Second-stage walk outputs.
  #ssPa = 0;
  #ssSizeLg2 = 12;
  #ssPerm = 0;
  #ssNeedsD = false;
  /** The last second-stage path: each entry's page frame, word index and low word. */
  readonly #ssPfns = new Float64Array(5);
  readonly #ssWords = new Int32Array(5);
  readonly #ssLos = new Int32Array(5);
  #ssCount = 0;
  // First-stage path (entry HPAs) for A/D updates.
  readonly #fsEntries = new Float64Array(5);
  #fsCount = 0;
  /** Trace for explain (null on the hot path). */
  trace: WalkStep[] | null = null;
  /** Explain mode: compute A/D faults but write nothing. */
  dryRun = false;

  constructor(memory: PhysicalMemory, p: WalkerParams) {
    this.memory = memory;
    // ADDR bits 51:HAW live in bits 19:(HAW-32) of the high half.
    this.#hiRsvd = p.haw >= 52 ? 0 : (0xfffff & ~((1 << (p.haw - 32)) - 1)) >>> 0;
    // TM was a leaf field only with ECAP.DT, and is Reserved(0) since spec revision 3.2
    // (rev 4.x 9.8): reserved in every leaf. QEMU: VTD_SPTE_PAGE_L1_RSVD_MASK(aw, stale_tm),
    // stale-tm off by default.
    this.#ssHiRsvdLeaf = (this.#hiRsvd | SS_TM_HI) >>> 0;
    const snp = p.snoopControl ? 0 : SsPte.SNP;
    this.#ssLeafOk = Uint8Array.of(1, p.ss2M ? 1 : 0, p.ss1G ? 1 : 0, 0, 0);
    this.#fsLeafOk = Uint8Array.of(1, 1, p.fs1G ? 1 : 0, 0, 0);
    // Non-leaf: PS must be 0 where no page size is allowed (PML4E/PML5E always).
    this.#ssLoRsvdNonLeaf = Int32Array.of(snp, snp, snp, snp | SsPte.PS, snp | SsPte.PS);
    this.#ssTableRsvd = snp | SsPte.PS;
    this.#ssLeafRsvdLegacy = snp;
    // Superpage leaves: address bits below the page size are reserved (9.8).
    this.#ssLoRsvdLeaf = Int32Array.of(snp, snp | 0x1ff000, snp | 0x3ffff000, 0, 0);
    // Scalable-mode leaves (spec 9.8): bit 11 is ignored whatever ECAP.SC says. QEMU agrees
    // (vtd_init clears VTD_SPTE_SNP from the leaf masks in scalable mode).
    this.#ssLoRsvdLeafSm = Int32Array.of(0, 0x1ff000, 0x3ffff000, 0, 0);
    // First-stage large leaves: bits 20:13 / 29:13 reserved (bit 12 is PAT).
    this.#fsLoRsvdLeaf = Int32Array.of(0, 0x1fe000, 0x3fffe000, 0, 0);
  }

  #step(what: string, address: number | null, lo: number, hi: number, note: string, index?: number): void {
    const raw = `0x${(hi >>> 0).toString(16).padStart(8, "0")}${(lo >>> 0).toString(16).padStart(8, "0")}`;
    const step: WalkStep =
      index === undefined ? { what, address, raw: [raw], note } : { what, address, index, raw: [raw], note };
    this.trace!.push(step);
  }

  /**
   * Walks a second-stage table for `addr` (below 2^(12+9*levels), checked by the
   * caller). Returns 0 or a fault reason: fetch error, not present, reserved, using
   * the legacy or scalable-mode codes. Leaves #ssPa/#ssSizeLg2/#ssPerm.
   *
   * Hot path: the address is split into 32-bit halves once; each level's index
   * (address bits 12+9*level up) and the next table's frame number (ADDR 51:12) come
   * from 32-bit halves with integer ops, and the entry's two words are read from its
   * page once. Tables are 4 KiB aligned (SLPTPTR and ADDR are bits 63:12), so an
   * entry is word 2 * index of its table's page.
   */
  #ssWalk(root: number, levels: number, addr: number, legacy: boolean, write: boolean, what: string): number {
    const aLo = addr >>> 0;
    const aHi = (addr - aLo) / 4294967296;
    const memory = this.memory;
    const tracing = this.trace !== null;
    const loRsvdLeaf = legacy ? this.#ssLoRsvdLeaf : this.#ssLoRsvdLeafSm;
    let pfn = Math.floor(root / 4096);
    let perm = RWX;
    let n = 0;
    for (let level = levels - 1; level >= 0; level--) {
      const shift = 12 + 9 * level;
      const idx = shift < 32 ? ((aLo >>> shift) | (aHi << (32 - shift))) & 511 : (aHi >>> (shift - 32)) & 511;
      const page = memory.readPage(pfn);
      if (page === null) {
        this.#ssCount = n;
        this.faultLevel = level;
        if (tracing) this.#step(`${what} L${level}`, pfn * 4096 + idx * 8, 0, 0, "bus error", idx);
        return legacy ? Fr.PTE_FETCH : Fr.SS_FETCH;
      }
      const w = idx << 1;
      const lo = page[w]!;
      const hi = page[w + 1]!;
      this.#ssPfns[n] = pfn;
      this.#ssWords[n] = w;
      this.#ssLos[n++] = lo;
      if ((lo & SS_RW) === 0) {
        this.#ssCount = n;
        this.faultLevel = level;
        if (tracing)
          this.#step(`${what} L${level}`, pfn * 4096 + idx * 8, lo, hi, "not present (R=W=0)", idx);
        // Legacy has no not-present reason: the request's missing right is reported (spec 7.1.3).
        this.notPresent = true;
        return legacy ? (write ? Fr.NO_WRITE : Fr.NO_READ) : Fr.SS_NOT_PRESENT;
      }
      const leaf = level === 0 || (lo & SS_PS) !== 0;
      const rsvd = leaf
        ? (hi & this.#ssHiRsvdLeaf) !== 0 || (lo & loRsvdLeaf[level]!) !== 0 || this.#ssLeafOk[level] === 0
        : (hi & this.#hiRsvd) !== 0 || (lo & this.#ssLoRsvdNonLeaf[level]!) !== 0;
      if (rsvd) {
        this.#ssCount = n;
        this.faultLevel = level;
        if (tracing) this.#step(`${what} L${level}`, pfn * 4096 + idx * 8, lo, hi, "reserved bit set", idx);
        return legacy ? Fr.PTE_RESERVED : Fr.SS_RESERVED;
      }
      // Rights are cumulative over the levels (spec 3.7.1); R/W/X are bits 0-2, as Perm.
      perm &= lo & RWX;
      if (leaf) {
        this.#ssCount = n;
        if (tracing) this.#step(`${what} L${level}`, pfn * 4096 + idx * 8, lo, hi, `leaf 2^${shift}`, idx);
        // A leaf's address bits below its size were checked zero (reserved): OR in the offset.
        this.#ssPa = (hi & 0xfffff) * 4294967296 + (((lo & 0xfffff000) | (aLo & ((1 << shift) - 1))) >>> 0);
        this.#ssSizeLg2 = shift;
        this.#ssPerm = perm;
        this.#ssNeedsD = (lo & SS_D) === 0;
        return 0;
      }
      if (tracing) this.#step(`${what} L${level}`, pfn * 4096 + idx * 8, lo, hi, "table", idx);
      pfn = (hi & 0xfffff) * 1048576 + (lo >>> 12);
    }
    this.#ssCount = n;
    return legacy ? Fr.PTE_RESERVED : Fr.SS_RESERVED;
  }

  /** Sets A on the last second-stage path (and D on its leaf for writes). 0 or 0x7C. */
  #ssSetAd(write: boolean, pwsnp: boolean): number {
    const n = this.#ssCount;
    for (let i = 0; i < n; i++) {
      // The words the walk read: only an entry that changes is written (or faults).
      const lo = this.#ssLos[i]!;
      let want = lo | SsPte.A;
      if (write && i === n - 1) want |= SsPte.D;
      if (want === lo) continue;
      if (!pwsnp) return Fr.SS_AD_NO_SNOOP;
      const page = this.memory.writePage(this.#ssPfns[i]!);
      if (page === null) continue;
      if (!this.dryRun) page[this.#ssWords[i]!] = want >>> 0;
    }
    return 0;
  }

  /** Second-stage rights for a fetch: X when SSEE, else R (spec 3.7.1). */
  #ssRights(perm: number, ssee: boolean): number {
    const rw = perm & (Perm.R | Perm.W);
    if (ssee) return rw | (perm & Perm.X);
    return rw | (perm & Perm.R ? Perm.X : 0);
  }

  /**
   * Walks `iova` through `cfg` (not pass-through). `upper` marks a first-stage input
   * whose bits above the top level are all ones (canonical upper half, from
   * translateBig). Returns 0 with pa/sizeLg2/permUser/permSup set, or a fault reason.
   * Permissions are not checked here; A/D updates are done for `access`.
   */
  walk(cfg: Cfg, iova: number, access: number, priv: boolean, upper: boolean): number {
    if (cfg.kind === Kind.SECOND_STAGE && cfg.ssLevels === 4 && !cfg.ssade && this.trace === null)
      return this.walkSs4(cfg, iova, access);
    return this.#walkGeneral(cfg, iova, access, priv, upper);
  }

  /** walk() level by level: every table shape, A/D updates and traces. */
  #walkGeneral(cfg: Cfg, iova: number, access: number, priv: boolean, upper: boolean): number {
    const write = (access & Access.WRITE) !== 0;
    this.faultLevel = -1;
    this.notPresent = false;
    // Bounded work: no walk deeper than the spec's tables (configurations never are).
    if (cfg.ssLevels > MAX_LEVELS || (cfg.kind !== Kind.SECOND_STAGE && cfg.fsLevels > MAX_LEVELS))
      return cfg.legacy ? Fr.PTE_RESERVED : Fr.SS_RESERVED;
    if (cfg.kind === Kind.SECOND_STAGE) {
      if (iova >= POW2[12 + 9 * cfg.ssLevels]!) return cfg.legacy ? Fr.BEYOND_AGAW : Fr.SM_BEYOND_AGAW;
      const fr = this.#ssWalk(cfg.ssRoot, cfg.ssLevels, iova, cfg.legacy, write, "SS");
      if (fr !== 0) return fr;
      const perm = this.#ssRights(this.#ssPerm, cfg.ssee);
      if (cfg.ssade && (perm & permFor(access)) === permFor(access)) {
        const ad = this.#ssSetAd(write, cfg.pwsnp);
        if (ad !== 0) return ad;
      }
      this.pa = this.#ssPa;
      this.sizeLg2 = this.#ssSizeLg2;
      this.permUser = perm;
      this.permSup = perm;
      this.writeNeedsWalk = cfg.ssade && this.#ssNeedsD && !write;
      return 0;
    }
    return this.#fsWalk(cfg, iova, access, priv, upper);
  }

  /**
   * walk() for the common case, a 4-level second-stage table without A/D updates and
   * without a trace (the IOTLB miss of a request without PASID): the same results,
   * unrolled. Each level's index comes from the address's 32-bit halves with constant
   * shifts (bits 47:39 from the high half, 38:30 across both, 29:21 and 20:12 from the
   * low half), each entry's two words are read from its page once, and the next frame
   * number is (ADDR 51:32) * 2^20 + ADDR 31:12. Anything else (a bus error, a
   * not-present or reserved entry, a superpage) is left to walk(), which walks again
   * from the root and reports it: reads have no side effects, so the result is walk()'s.
   */
  walkSs4(cfg: Cfg, iova: number, access: number): number {
    if (iova < 281474976710656) {
      // 2^48: the 4-level input width (above it: walk() reports BEYOND_AGAW).
      const aLo = iova >>> 0;
      const aHi = (iova - aLo) * 2.3283064365386963e-10; // / 2^32, exact
      const memory = this.memory;
      const hiRsvd = this.#hiRsvd;
      // Non-leaf levels: SNP (when not snoop-controlled) reserved, PS a superpage (walk()).
      const tbl = this.#ssTableRsvd;
      const p3 = memory.readPage(Math.floor(cfg.ssRoot * 0.000244140625));
      if (p3 !== null) {
        const w3 = (aHi >>> 6) & 0x3fe;
        const lo3 = p3[w3]!;
        const hi3 = p3[w3 + 1]!;
        if ((lo3 & SS_RW) !== 0 && ((hi3 & hiRsvd) | (lo3 & tbl)) === 0) {
          const p2 = memory.readPage((hi3 & 0xfffff) * 1048576 + (lo3 >>> 12));
          if (p2 !== null) {
            const w2 = (((aHi << 2) | (aLo >>> 30)) & 511) << 1;
            const lo2 = p2[w2]!;
            const hi2 = p2[w2 + 1]!;
            if ((lo2 & SS_RW) !== 0 && ((hi2 & hiRsvd) | (lo2 & tbl)) === 0) {
              const p1 = memory.readPage((hi2 & 0xfffff) * 1048576 + (lo2 >>> 12));
              if (p1 !== null) {
                const w1 = (aLo >>> 20) & 0x3fe;
                const lo1 = p1[w1]!;
                const hi1 = p1[w1 + 1]!;
                if ((lo1 & SS_RW) !== 0 && ((hi1 & hiRsvd) | (lo1 & tbl)) === 0) {
                  const p0 = memory.readPage((hi1 & 0xfffff) * 1048576 + (lo1 >>> 12));
                  if (p0 !== null) {
                    const w0 = (aLo >>> 11) & 0x3fe;
                    const lo0 = p0[w0]!;
                    const hi0 = p0[w0 + 1]!;
                    const leaf = cfg.legacy ? this.#ssLeafRsvdLegacy : 0;
                    if ((lo0 & SS_RW) !== 0 && ((hi0 & this.#ssHiRsvdLeaf) | (lo0 & leaf)) === 0) {
                      // Rights are cumulative over the levels (spec 3.7.1); R/W/X are bits 0-2, as Perm.
                      const perm = this.#ssRights(lo3 & lo2 & lo1 & lo0 & RWX, cfg.ssee);
                      this.faultLevel = -1;
                      this.notPresent = false;
                      this.pa = (hi0 & 0xfffff) * 4294967296 + (((lo0 & 0xfffff000) | (aLo & 0xfff)) >>> 0);
                      this.sizeLg2 = 12;
                      this.permUser = perm;
                      this.permSup = perm;
                      this.writeNeedsWalk = false;
                      return 0;
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    return this.#walkGeneral(cfg, iova, access, false, false);
  }

  /** First-stage (and nested) walk. */
  #fsWalk(cfg: Cfg, iova: number, access: number, priv: boolean, upper: boolean): number {
    const levels = cfg.fsLevels;
    const nested = cfg.kind === Kind.NESTED;
    const write = (access & Access.WRITE) !== 0;
    const topBits = 12 + 9 * levels;
    // Canonical: bits 63:topBits-1 equal. Numbers are non-negative, so the lower half only.
    if (!upper && iova >= POW2[topBits - 1]!) {
      if (this.trace !== null) this.#step("FS input", null, 0, 0, "not canonical");
      return Fr.FS_NON_CANONICAL;
    }
    const ssBits = 12 + 9 * cfg.ssLevels;
    let table = cfg.fsRoot;
    let us = 1;
    let rw = 1;
    let nx = 0;
    this.#fsCount = 0;
    let sizeLg2 = 12;
    let leafDirty = true;
    let needA = false;
    let out = 0;
    for (let level = levels - 1; level >= 0; level--) {
      const span = POW2[12 + 9 * level]!;
      const idx = Math.floor(iova / span) & 511;
      let tableHpa = table;
      if (nested) {
        // The table address is a GPA: translate it through the second stage (spec 3.8).
        if (table >= POW2[ssBits]!) return Fr.NESTED_FS_BEYOND;
        const fr = this.#ssWalk(cfg.ssRoot, cfg.ssLevels, table, false, false, "SS(FS table)");
        if (fr !== 0) return fr;
        if ((this.#ssPerm & Perm.R) === 0)
          return level === levels - 1 ? Fr.NESTED_FS_ROOT_NO_READ : Fr.NESTED_FS_NO_READ;
        if (cfg.ssade) {
          const ad = this.#ssSetAd(false, cfg.pwsnp);
          if (ad !== 0) return ad;
        }
        tableHpa = Math.floor(this.#ssPa / 4096) * 4096;
        // Remember whether the FS entry could be written back (for A/D).
        this.#fsWritable[this.#fsCount] = this.#ssPerm & Perm.W ? 1 : 0;
      } else {
        this.#fsWritable[this.#fsCount] = 1;
      }
      const ea = tableHpa + idx * 8;
      const page = this.memory.readPage(Math.floor(ea / 4096));
      if (page === null) {
        this.faultLevel = level;
        if (this.trace !== null) this.#step(`FS L${level}`, ea, 0, 0, "bus error", idx);
        return level === levels - 1 && !nested ? Fr.FS_ROOT_INVALID : Fr.FS_FETCH;
      }
      const w = (ea & 0xfff) >>> 2;
      const lo = page[w]!;
      const hi = page[w + 1]!;
      this.#fsEntries[this.#fsCount++] = ea;
      if ((lo & FsPte.P) === 0) {
        this.faultLevel = level;
        if (this.trace !== null) this.#step(`FS L${level}`, ea, lo, hi, "not present", idx);
        return Fr.FS_NOT_PRESENT;
      }
      const ps = (lo & FsPte.PS) !== 0 && level > 0;
      const leaf = level === 0 || ps;
      // Nested FS entries hold GPAs: their width is checked against the second stage.
      const rsvd =
        (!nested && (hi & this.#hiRsvd) !== 0) ||
        (ps && (this.#fsLeafOk[level] === 0 || (lo & this.#fsLoRsvdLeaf[level]!) !== 0)) ||
        (level >= 3 && (lo & FsPte.PS) !== 0);
      if (rsvd) {
        this.faultLevel = level;
        if (this.trace !== null) this.#step(`FS L${level}`, ea, lo, hi, "reserved bit set", idx);
        return Fr.FS_RESERVED;
      }
      us &= (lo >>> 2) & 1;
      rw &= (lo >>> 1) & 1;
      nx |= hi >>> 31;
      if ((lo & FsPte.A) === 0) needA = true;
      // Bit 12 of a large leaf is PAT (spec 9.7); bits 20:13 / 29:13 were checked reserved.
      const next = entryAddr(ps ? lo & ~FS_PAT_LARGE : lo, hi);
      if (leaf) {
        sizeLg2 = 12 + 9 * level;
        out = next + (iova - Math.floor(iova / POW2[sizeLg2]!) * POW2[sizeLg2]!);
        leafDirty = (lo & FsPte.D) !== 0;
        if (this.trace !== null) this.#step(`FS L${level}`, ea, lo, hi, `leaf 2^${sizeLg2}`, idx);
        break;
      }
      if (this.trace !== null) this.#step(`FS L${level}`, ea, lo, hi, "table", idx);
      table = next;
    }
    // First-stage rights (spec 3.6.2): reads always; writes need R/W everywhere for user
    // requests, and for supervisor requests only with WPE; fetches need XD = 0.
    const x = nx ? 0 : Perm.X;
    const user = us ? Perm.R | (rw ? Perm.W : 0) | x : 0;
    const sup = Perm.R | (rw || !cfg.wpe ? Perm.W : 0) | x;
    let permUser = user;
    let permSup = cfg.sre ? sup : 0;
    let pa = out;
    if (nested) {
      // The output is a GPA: the final second-stage translation (spec 3.8).
      if (out >= POW2[ssBits]!) return Fr.SS_OUTPUT_BEYOND;
      const fr = this.#ssWalk(cfg.ssRoot, cfg.ssLevels, out, false, write, "SS(output)");
      if (fr !== 0) return fr;
      const sp = this.#ssRights(this.#ssPerm, cfg.ssee);
      permUser &= sp;
      permSup &= sp;
      pa = this.#ssPa;
      if (this.#ssSizeLg2 < sizeLg2) sizeLg2 = this.#ssSizeLg2;
      if (cfg.ssade && (sp & permFor(access)) === permFor(access)) {
        const ad = this.#ssSetAd(write, cfg.pwsnp);
        if (ad !== 0) return ad;
      }
    }
    // A/D updates happen only for a request the rights allow.
    const granted = priv ? permSup : permUser;
    const need = permFor(access);
    if ((granted & need) === need && (needA || (write && !leafDirty))) {
      const fr = this.#fsSetAd(write, cfg.eafe, cfg.pwsnp);
      if (fr !== 0) return fr;
      leafDirty = leafDirty || write;
    }
    this.#fsUs = us;
    this.pa = pa;
    this.sizeLg2 = sizeLg2;
    this.permUser = permUser;
    this.permSup = permSup;
    this.writeNeedsWalk = !leafDirty || (nested && cfg.ssade && this.#ssNeedsD && !write);
    return 0;
  }

  readonly #fsWritable = new Uint8Array(5);
  /** U/S over the last first-stage path (1 = user pages). */
  #fsUs = 1;

  #fsSetAd(write: boolean, eafe: boolean, pwsnp: boolean): number {
    if (!pwsnp) return Fr.FS_AD_NO_SNOOP;
    const n = this.#fsCount;
    for (let i = 0; i < n; i++) {
      if (this.#fsWritable[i] === 0) return Fr.NESTED_FS_NO_WRITE;
    }
    for (let i = 0; i < n; i++) {
      const ea = this.#fsEntries[i]!;
      const page = this.memory.writePage(Math.floor(ea / 4096));
      if (page === null) continue;
      const w = (ea & 0xfff) >>> 2;
      let lo = page[w]! | FsPte.A;
      if (eafe) lo |= FsPte.EA;
      if (write && i === n - 1) lo |= FsPte.D;
      if (!this.dryRun) page[w] = lo >>> 0;
    }
    return 0;
  }

  /**
   * The fault reason for a request the walk's rights do not allow, or 0. Order: user
   * access to a supervisor page, write, fetch, read (spec 7.1.3).
   */
  permissionFault(cfg: Cfg, access: number, priv: boolean, perm: number): number {
    const need = permFor(access);
    if ((perm & need) === need) return 0;
    if (cfg.legacy) return access & Access.WRITE ? Fr.NO_WRITE : Fr.NO_READ;
    if (cfg.kind !== Kind.SECOND_STAGE && !priv && this.#fsUs === 0) return Fr.FS_USER_NOT_ALLOWED;
    if (access & Access.WRITE) return Fr.SM_NO_WRITE;
    if (need & Perm.X && (perm & Perm.R) !== 0) return Fr.NO_EXECUTE;
    return Fr.SM_NO_READ;
  }

  /** True when `pa` is in the interrupt address range (spec 3.15). */
  static inInterruptRange(pa: number): boolean {
    return pa >= INTR_BASE && pa < INTR_END;
  }
}

/** Perm bits a request needs: W for writes; X (and R) for fetches; R otherwise. */
export function permFor(access: number): number {
  if (access & Access.WRITE) return Perm.W;
  return access & Access.EXEC ? Perm.R | Perm.X : Perm.R;
}

/**
 * Where a walk starts for an input address at or above 2^53 (translateBig, explain):
 * the page address inside the table's input range (exact: 4 KiB aligned and below
 * 2^57) and whether it is the canonical upper half, or the fault reason: first stage
 * needs a canonical address (spec 3.6: bits 63:N-1 equal, 0x80), second stage an
 * address inside its width (0x4 legacy, 0x83 scalable).
 */
export function reduceBig(cfg: Cfg, iova: bigint): { addr: number; upper: boolean } | number {
  const page = iova - (iova % 4096n);
  if (cfg.kind === Kind.FIRST_STAGE || cfg.kind === Kind.NESTED) {
    const top = BigInt(12 + 9 * cfg.fsLevels);
    const high = iova >> (top - 1n);
    if (high === 0n) return { addr: Number(page), upper: false };
    if (high !== (1n << (65n - top)) - 1n) return Fr.FS_NON_CANONICAL;
    return { addr: Number(page & ((1n << top) - 1n)), upper: true };
  }
  if (cfg.kind === Kind.SECOND_STAGE && iova < 2n ** BigInt(12 + 9 * cfg.ssLevels))
    return { addr: Number(page), upper: false };
  return cfg.legacy ? Fr.BEYOND_AGAW : Fr.SM_BEYOND_AGAW;
}
