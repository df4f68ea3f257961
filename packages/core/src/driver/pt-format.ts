/**
 * The format plug-in interface of the generic page table, in the spirit of Linux's
 * generic_pt (drivers/iommu/generic_pt/pt_common.h, pt_fmt_defaults.h): a format
 * supplies a few entry codecs over 64-bit entries read as (lo, hi) halves and inherits
 * map / unmap / lookup / teardown from page-table.ts. Level numbering follows
 * generic_pt: level 0 maps the granule, `levels - 1` is the top; each format file says
 * how the spec's level names map onto it (VMSAv8-64 lookup level 3 = 0; VT-d PTE = 0,
 * PDE = 1, PDPE = 2, PML4E = 3, PML5E = 4, as generic_pt/fmt/vtdss.h).
 */

/** What an entry holds. */
export const EntryKind = {
  EMPTY: 0,
  TABLE: 1,
  LEAF: 2,
} as const;

/**
 * A table format: entry codecs for one architecture's page tables. Entries are 64 bits
 * and are read/written as (lo, hi) halves.
 */
export interface PtFormat {
  readonly name: string;
  /** log2 of the smallest page (4 KiB = 12, 16 KiB = 14, 64 KiB = 16). */
  readonly granuleLg2: number;
  /** Number of levels walked (top = levels - 1). */
  readonly levels: number;
  /** log2 bytes of the top table (larger than a granule for concatenated stage-2 tables). */
  readonly topTableLg2: number;
  /** True when a leaf (page or block) may sit at `level`. */
  leafAllowed(level: number): boolean;
  /** Classifies the entry (lo, hi) found at `level`. */
  entryKind(lo: number, hi: number, level: number): number;
  /** The next table's address (TABLE) or the output address (LEAF). */
  entryAddress(lo: number, hi: number, level: number): number;
  /** Perm bits a LEAF grants. */
  leafPerm(lo: number, hi: number, level: number): number;
  /** Encodes a table entry pointing at `tablePa` into out[0], out[1]. */
  encodeTable(tablePa: number, level: number, out: Uint32Array): void;
  /** Encodes a leaf mapping `oa` with `prot` at `level` into out[0], out[1]. */
  encodeLeaf(oa: number, level: number, prot: number, out: Uint32Array): void;
  /**
   * True when a leaf's address field holds the output address in place, so that for any
   * `oa` below 2^48 aligned to the leaf size, `encodeLeaf(oa)` equals `encodeLeaf(0)`
   * with `oa` OR-ed into the halves. Lets map write a run of leaves from one template.
   */
  readonly linearLeafAddress?: boolean;
  /**
   * How a page (a LEAF at level 0) is told from an empty entry by its low half alone: a
   * LEAF iff `(lo & any) !== 0 && (lo & all) === all`, for every (lo, hi). Lets unmap
   * count the pages of a dropped table without a call per entry.
   */
  readonly pageBits?: { readonly any: number; readonly all: number };
  /** True when a LEAF is marked dirty (formats with hardware dirty tracking). */
  isDirty?(lo: number, hi: number, level: number): boolean;
  /** Clears the dirty mark of a LEAF into out[0], out[1]. */
  clearDirty?(lo: number, hi: number, level: number, out: Uint32Array): void;
}

/** log2 bytes mapped by one entry at `level`. */
export function entrySizeLg2(fmt: PtFormat, level: number): number {
  return fmt.granuleLg2 + level * (fmt.granuleLg2 - 3);
}

/** Input address bits the format translates (including a concatenated top table). */
export function inputBits(fmt: PtFormat): number {
  return entrySizeLg2(fmt, fmt.levels - 1) + fmt.topTableLg2 - 3;
}

/** A leaf found by {@link PageTable.lookup}. */
export interface PtLeaf {
  /** Output address of the looked-up byte. */
  readonly pa: number;
  readonly perm: number;
  readonly sizeLg2: number;
  readonly level: number;
}

/** Visitor of leaves in ascending IOVA order. */
export type LeafVisitor = (
  iova: number,
  sizeLg2: number,
  pageWords: Uint32Array,
  wordIndex: number,
  level: number,
) => void;
