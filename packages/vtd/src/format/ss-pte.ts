/**
 * Second-stage paging entries (VT-d's own format, formerly "second-level"): 8 bytes,
 * 512 per 4 KiB table. Intel VT-d spec 9.8 ("Second-Stage Paging Entries") and 3.7;
 * bits cross-checked with Linux drivers/iommu/intel/iommu.h (DMA_PTE_*) and
 * drivers/iommu/generic_pt/fmt/vtdss.h. R 0, W 1, X 2 (with SSEE), EMT 5:3, IPAT 6,
 * PS 7 (page size, PDE/PDPE only), A 8, D 9, SNP 11, ADDR 51:12. Bit 62 was TM (with
 * ECAP.DT, else reserved) and is Reserved(0) since revision 3.2. Reserved under
 * capability conditions: SNP without ECAP.SC, PS where CAP.SLLPS lacks the size.
 * An entry with R = W = 0 is not present. Levels (as generic_pt): SL-PTE = 0,
 * SL-PDE = 1 (2 MiB pages), SL-PDPE = 2 (1 GiB pages), SL-PML4E = 3, SL-PML5E = 4.
 * AW: 1 = 3 levels / 39 bits, 2 = 4 levels / 48 bits, 3 = 5 levels / 57 bits.
 */

import { Perm } from "@iommu-kit/core";
import type { PtFormat } from "@iommu-kit/core/driver";
import { EntryKind, field, setField } from "@iommu-kit/core/driver";

/** Bit masks in the low 32-bit half (spec 9.8). */
export const SsPte = {
  R: 0x1,
  W: 0x2,
  X: 0x4,
  PS: 0x80,
  A: 0x100,
  D: 0x200,
  SNP: 0x800,
} as const;

/** Decoded second-stage entry. */
export interface SsEntry {
  readonly r: boolean;
  readonly w: boolean;
  readonly x: boolean;
  readonly ps: boolean;
  readonly a: boolean;
  readonly d: boolean;
  readonly snp: boolean;
  /** ADDR (51:12): next table or page frame. */
  readonly addr: number;
}

/** Encodes a second-stage entry. */
export function encodeSsEntry(e: SsEntry): bigint {
  let v = 0n;
  if (e.r) v |= 1n;
  if (e.w) v |= 2n;
  if (e.x) v |= 4n;
  if (e.ps) v |= 1n << 7n;
  if (e.a) v |= 1n << 8n;
  if (e.d) v |= 1n << 9n;
  if (e.snp) v |= 1n << 11n;
  return setField(v, 51, 12, BigInt(e.addr) >> 12n);
}

/** Decodes a second-stage entry. */
export function decodeSsEntry(v: bigint): SsEntry {
  return {
    r: field(v, 0, 0) === 1n,
    w: field(v, 1, 1) === 1n,
    x: field(v, 2, 2) === 1n,
    ps: field(v, 7, 7) === 1n,
    a: field(v, 8, 8) === 1n,
    d: field(v, 9, 9) === 1n,
    snp: field(v, 11, 11) === 1n,
    addr: Number(field(v, 51, 12) << 12n),
  };
}

/** Levels for an AW value (1 -> 3, 2 -> 4, 3 -> 5). */
export function awLevels(aw: number): number {
  return aw + 2;
}

/** Address width in bits for a number of levels (3 -> 39, 4 -> 48, 5 -> 57). */
export function levelsBits(levels: number): number {
  return 12 + 9 * levels;
}

/** The address in bits 51:12 of an entry held as (lo, hi). */
export function entryAddr(lo: number, hi: number): number {
  return (hi & 0xfffff) * 4294967296 + ((lo & 0xfffff000) >>> 0);
}

// Module-local copies of the imported constants the format's callbacks use: the page
// table calls them per entry, and an imported binding can cost a getter call per read
// when the module is loaded through a CommonJS transform (tsx, the benchmarks).
const KIND_EMPTY: number = EntryKind.EMPTY;
const KIND_TABLE: number = EntryKind.TABLE;
const KIND_LEAF: number = EntryKind.LEAF;
const PERM_R: number = Perm.R;
const PERM_W: number = Perm.W;
const PERM_RX: number = Perm.R | Perm.X;

/**
 * The second-stage format as a generic page-table plug-in. `maxLeafLevel` is the
 * largest level that may hold a leaf (0 = 4K only, 1 = 2M, 2 = 1G: CAP.SLLPS).
 * Tables are written with R and W set (as Linux does), leaves with the requested R/W.
 */
export function ssFormat(levels: number, maxLeafLevel: number): PtFormat {
  return {
    name: `vtd-ss-${levels}lvl`,
    granuleLg2: 12,
    levels,
    topTableLg2: 12,
    leafAllowed: (level) => level <= maxLeafLevel,
    linearLeafAddress: true, // ADDR[HAW-1:12] sits in place
    pageBits: { any: 0x3, all: 0 }, // R or W set (spec 9.8)
    entryKind(lo, _hi, level) {
      if ((lo & 0x3) === 0) return KIND_EMPTY; // R = W = 0
      if (level === 0 || lo & 0x80) return KIND_LEAF; // PS
      return KIND_TABLE;
    },
    entryAddress: (lo, hi) => entryAddr(lo, hi),
    leafPerm(lo) {
      const r = lo & 0x1 ? PERM_RX : 0;
      return r | (lo & 0x2 ? PERM_W : 0);
    },
    encodeTable(tablePa, _level, out) {
      out[0] = ((tablePa % 4294967296) | 0x3) >>> 0; // R | W
      out[1] = Math.floor(tablePa / 4294967296) >>> 0;
    },
    encodeLeaf(oa, level, prot, out) {
      let lo = oa % 4294967296;
      if (prot & PERM_R) lo |= 0x1; // R
      if (prot & PERM_W) lo |= 0x2; // W
      if (level > 0) lo |= 0x80; // PS
      out[0] = lo >>> 0;
      out[1] = Math.floor(oa / 4294967296) >>> 0;
    },
    isDirty: (lo) => (lo & 0x200) !== 0, // D
    clearDirty(lo, hi, _level, out) {
      out[0] = (lo & ~0x200) >>> 0;
      out[1] = hi;
    },
  };
}
