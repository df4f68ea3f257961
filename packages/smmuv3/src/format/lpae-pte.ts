/**
 * VMSAv8-64 translation table descriptors (ARM DDI 0487 D8.3, "Translation table
 * descriptor formats"; Linux drivers/iommu/io-pgtable-arm.c ARM_LPAE_PTE_*), for the
 * stage-1 and stage-2 tables an SMMUv3 walks (ARM IHI 0070 section 3.4). Descriptor
 * bits: [0] valid, [1] table (levels 0-2) / page (level 3), AttrIndx/MemAttr [5:2],
 * AP[2:1] / S2AP [7:6], SH [9:8], AF [10], nG [11], OA from the granule up to [47],
 * with the 64K granule's OA[51:48] in [15:12] (FEAT_LPA), DBM [51], Contiguous [52],
 * PXN [53], UXN/XN [54], PXNTable [59], UXNTable [60], APTable [62:61].
 *
 * Level numbering: the spec's lookup levels 0..3 (level 3 maps the granule) are our
 * generic_pt levels 3..0: ours = 3 - spec. `PageTable` (core) builds the driver half's
 * tables with {@link lpaeFormat}; the hardware model walks with its own walker.
 */

import { Perm } from "@iommu-kit/core";
import type { PtFormat } from "@iommu-kit/core/driver";
import { EntryKind } from "@iommu-kit/core/driver";

/** Descriptor bit positions (D8.3). */
export const Pte = {
  VALID: 0,
  TABLE: 1,
  AP1: 6,
  AP2: 7,
  AF: 10,
  NG: 11,
  DBM: 51,
  CONT: 52,
  PXN: 53,
  UXN: 54,
  PXN_TABLE: 59,
  UXN_TABLE: 60,
  AP_TABLE0: 61,
  AP_TABLE1: 62,
} as const;

/** Named fields of a descriptor, for dumps and golden tests. */
export interface PteFields {
  readonly valid: boolean;
  /** "table", "block", "page" or "invalid"/"reserved" at this level. */
  readonly kind: string;
  readonly address: bigint;
  readonly attrs: Readonly<Record<string, number>>;
}

/** log2 bytes one entry maps at spec level `lvl` with granule 2^g. */
export function levelShift(g: number, lvl: number): number {
  return g + (3 - lvl) * (g - 3);
}

/** True when a block descriptor is allowed at spec level `lvl` (no LPA2: 4K L1/L2, 16K L2, 64K L2). */
export function blockAllowed(g: number, lvl: number): boolean {
  if (g === 12) return lvl === 1 || lvl === 2;
  return lvl === 2;
}

/** Decodes a descriptor found at spec level `lvl` with granule 2^g (slow path). */
export function decodePte(desc: bigint, g: number, lvl: number): PteFields {
  const valid = (desc & 1n) === 1n;
  const isTable = ((desc >> 1n) & 1n) === 1n;
  let kind: string;
  if (!valid) kind = "invalid";
  else if (lvl === 3) kind = isTable ? "page" : "reserved";
  else if (isTable) kind = "table";
  else kind = blockAllowed(g, lvl) ? "block" : "reserved";
  const low = kind === "block" ? levelShift(g, lvl) : g;
  let address = desc & ((1n << 48n) - 1n) & ~((1n << BigInt(low)) - 1n);
  if (g === 16) address |= ((desc >> 12n) & 0xfn) << 48n;
  const b = (n: number): number => Number((desc >> BigInt(n)) & 1n);
  return {
    valid,
    kind,
    address,
    attrs: {
      AttrIndx: Number((desc >> 2n) & 7n),
      AP: Number((desc >> 6n) & 3n),
      SH: Number((desc >> 8n) & 3n),
      AF: b(10),
      nG: b(11),
      DBM: b(51),
      Contiguous: b(52),
      PXN: b(53),
      UXN: b(54),
      PXNTable: b(59),
      UXNTable: b(60),
      APTable: Number((desc >> 61n) & 3n),
    },
  };
}

/** Encodes a leaf (block or page) descriptor (slow path, for tests and tools). */
export function encodeLeafPte(
  oa: bigint,
  lvl: number,
  attrs: {
    ap?: number;
    af?: number;
    ng?: number;
    xn?: number;
    pxn?: number;
    dbm?: number;
    cont?: number;
    sh?: number;
    attrIndx?: number;
  } = {},
): bigint {
  let d = 1n | (lvl === 3 ? 2n : 0n);
  d |= BigInt(attrs.attrIndx ?? 0) << 2n;
  d |= BigInt(attrs.ap ?? 0) << 6n;
  d |= BigInt(attrs.sh ?? 3) << 8n;
  d |= BigInt(attrs.af ?? 1) << 10n;
  d |= BigInt(attrs.ng ?? 0) << 11n;
  d |= (oa & 0x0000_ffff_ffff_f000n) | (((oa >> 48n) & 0xfn) << 12n);
  d |= BigInt(attrs.dbm ?? 0) << 51n;
  d |= BigInt(attrs.cont ?? 0) << 52n;
  d |= BigInt(attrs.pxn ?? 0) << 53n;
  d |= BigInt(attrs.xn ?? 0) << 54n;
  return d;
}

/** Encodes a table descriptor (slow path). `apTable`/`uxnTable`/`pxnTable` are the hierarchical bits. */
export function encodeTablePte(
  next: bigint,
  attrs: { apTable?: number; uxnTable?: number; pxnTable?: number } = {},
): bigint {
  let d = 3n | (next & 0x0000_ffff_ffff_f000n) | (((next >> 48n) & 0xfn) << 12n);
  d |= BigInt(attrs.pxnTable ?? 0) << 59n;
  d |= BigInt(attrs.uxnTable ?? 0) << 60n;
  d |= BigInt(attrs.apTable ?? 0) << 61n;
  return d;
}

/** The formats the driver half can build, by name. */
export interface LpaeFormatSpec {
  readonly name: string;
  readonly stage: 1 | 2;
  readonly granuleLg2: number;
  /** Input address bits (VA for stage 1, IPA for stage 2). */
  readonly inputBits: number;
  /** Spec start level of the walk. */
  readonly startLevel: number;
  /** Concatenated start tables (stage 2 only; 1 = none). */
  readonly concat: number;
}

/**
 * Picks the walk geometry for a format (start level from the input size, stage-2
 * concatenation of up to 16 start tables when that saves a level, as Linux's
 * io-pgtable-arm does for a 4-level stage 2).
 */
export function lpaeGeometry(stage: 1 | 2, granuleLg2: number, inputBits: number): LpaeFormatSpec {
  const g = granuleLg2;
  const stride = g - 3;
  const levels = Math.ceil((inputBits - g) / stride);
  let startLevel = 4 - levels;
  let concat = 1;
  const topBits = inputBits - levelShift(g, startLevel);
  if (stage === 2 && levels === 4 && topBits <= 4) {
    startLevel = 1;
    concat = 2 ** topBits;
  }
  const gran = g === 12 ? "4k" : g === 14 ? "16k" : "64k";
  return { name: `arm-lpae-s${stage}-${gran}`, stage, granuleLg2: g, inputBits, startLevel, concat };
}

const TWO32 = 4294967296;

/**
 * A `PtFormat` for core's generic `PageTable`: leaves with AF=1, inner-shareable,
 * S1 AttrIndx 1 (cacheable, Linux ARM_LPAE_MAIR_ATTR_IDX_CACHE) with nG=1 and
 * AP[1]=1 (as Linux's arm_lpae_prot_to_pte); S2 MemAttr 0b1111 and S2AP from prot.
 * Prot without X sets XN (S1: UXN+PXN).
 */
export function lpaeFormat(spec: LpaeFormatSpec, dirtyTracking = false): PtFormat {
  const g = spec.granuleLg2;
  const levels = 4 - spec.startLevel;
  const topEntries = 2 ** (spec.inputBits - levelShift(g, spec.startLevel));
  // The allocator hands out whole pages at least; a smaller top table uses the front.
  const topTableLg2 = Math.max(12, Math.log2(topEntries * 8), g === 16 ? 16 : 0);
  const s1 = spec.stage === 1;
  const addr = (lo: number, hi: number, low: number): number => {
    // Below 32 the low bits are a mask (the same value as (lo >>> low) * 2 ** low, without pow).
    let a = (hi & 0xffff) * TWO32 + (low < 32 ? (lo & (-1 << low)) >>> 0 : (lo >>> low) * 2 ** low);
    if (g === 16) a += ((lo >>> 12) & 0xf) * 2 ** 48;
    return a;
  };
  return {
    name: spec.name,
    granuleLg2: g,
    levels,
    topTableLg2,
    leafAllowed: (level) => level === 0 || blockAllowed(g, 3 - level),
    linearLeafAddress: true, // OA sits in place (bits 47:g); LPA bits 51:48 are zero below 2^48
    pageBits: { any: 3, all: 3 }, // level 3: bits[1:0] = 0b11 is a page, 0b01 reserved (VMSAv8-64 D8.3)
    entryKind(lo, hi, level) {
      void hi;
      if ((lo & 1) === 0) return EntryKind.EMPTY;
      if (level === 0) return lo & 2 ? EntryKind.LEAF : EntryKind.EMPTY;
      return lo & 2 ? EntryKind.TABLE : EntryKind.LEAF;
    },
    entryAddress(lo, hi, level) {
      const leafBlock = level > 0 && (lo & 2) === 0;
      return addr(lo, hi, leafBlock ? levelShift(g, 3 - level) : g);
    },
    leafPerm(lo, hi) {
      if (s1) return Perm.R | ((lo >>> 7) & 1 ? 0 : Perm.W) | ((hi >>> 22) & 1 ? 0 : Perm.X);
      return ((lo >>> 6) & 1 ? Perm.R : 0) | ((lo >>> 7) & 1 ? Perm.W : 0) | ((hi >>> 22) & 1 ? 0 : Perm.X);
    },
    encodeTable(tablePa, _level, out) {
      out[0] = (3 + (tablePa % TWO32) + (g === 16 ? Math.floor(tablePa / 2 ** 48) * 4096 : 0)) >>> 0;
      out[1] = Math.floor(tablePa / TWO32) & 0xffff;
    },
    encodeLeaf(oa, level, prot, out) {
      let lo = 1 | (level === 0 ? 2 : 0) | (3 << 8) | (1 << 10);
      let hi = Math.floor(oa / TWO32) & 0xffff;
      if (g === 16) lo |= (Math.floor(oa / 2 ** 48) & 0xf) << 12;
      if (s1) {
        lo |= (1 << 2) | (1 << 6) | (1 << 11);
        if (!(prot & Perm.W)) lo |= 1 << 7;
        else if (dirtyTracking) {
          // DBM writable-clean: AP[2]=1 until the first write marks it dirty (D8.4.6).
          lo |= 1 << 7;
          hi |= 1 << 19;
        }
        if (!(prot & Perm.X)) hi |= (1 << 21) | (1 << 22);
      } else {
        lo |= 0xf << 2;
        if (prot & Perm.R) lo |= 1 << 6;
        if (prot & Perm.W) {
          if (dirtyTracking) hi |= 1 << 19;
          else lo |= 1 << 7;
        }
        if (!(prot & Perm.X)) hi |= 1 << 22;
      }
      out[0] = (lo + (oa % TWO32)) >>> 0;
      out[1] = hi >>> 0;
    },
    isDirty(lo, hi) {
      if (!((hi >>> 19) & 1)) return false;
      return s1 ? ((lo >>> 7) & 1) === 0 : ((lo >>> 7) & 1) === 1;
    },
    clearDirty(lo, hi, _level, out) {
      out[0] = (s1 ? lo | (1 << 7) : lo & ~(1 << 7)) >>> 0;
      out[1] = hi;
    },
  };
}
