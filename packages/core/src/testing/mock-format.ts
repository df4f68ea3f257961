/**
 * The mock table format, in the spirit of iommufd's selftest mock domain
 * (drivers/iommu/iommufd/selftest.c, generic_pt/fmt/iommu_mock.c): the smallest real
 * radix table, so tests that need a parent or a second backend exercise real bytes.
 *
 * 3 levels of 512 x 8-byte entries over 4 KiB pages: 39-bit IOVAs, leaves at every
 * level (4 KiB, 2 MiB, 1 GiB). Level numbers are generic_pt's (0 = 4 KiB leaves).
 * Entry bits: 0 V (valid), 1 R, 2 W, 3 X, 6 D (dirty, set by a tracked write),
 * 7 L (leaf; a valid entry without L at level > 0 points at a table), 51:12 address.
 */

import { Perm } from "../access.ts";
import { addressField } from "../driver/bits.ts";
import type { PtFormat } from "../driver/pt-format.ts";
import { EntryKind } from "../driver/pt-format.ts";

/** Bits of a mock entry. */
export const MockPte = {
  V: 1,
  R: 2,
  W: 4,
  X: 8,
  D: 0x40,
  L: 0x80,
} as const;

/** The mock format: 3 levels, 4 KiB granule, 39-bit input. */
export const mockFormat: PtFormat = {
  name: "mock-3lvl",
  granuleLg2: 12,
  levels: 3,
  topTableLg2: 12,
  leafAllowed: () => true,
  linearLeafAddress: true,
  pageBits: { any: MockPte.V, all: 0 },
  entryKind(lo: number, _hi: number, level: number): number {
    if ((lo & MockPte.V) === 0) return EntryKind.EMPTY;
    return level === 0 || lo & MockPte.L ? EntryKind.LEAF : EntryKind.TABLE;
  },
  entryAddress: (lo: number, hi: number): number => addressField(lo, hi, 51, 12),
  leafPerm: (lo: number): number =>
    (lo & MockPte.R ? Perm.R : 0) | (lo & MockPte.W ? Perm.W : 0) | (lo & MockPte.X ? Perm.X : 0),
  encodeTable(tablePa: number, _level: number, out: Uint32Array): void {
    out[0] = (tablePa | MockPte.V) >>> 0; // ToInt32 keeps bits 31:0 of any address below 2^53
    out[1] = Math.floor(tablePa / 4294967296);
  },
  encodeLeaf(oa: number, _level: number, prot: number, out: Uint32Array): void {
    let lo = MockPte.V | MockPte.L;
    if (prot & Perm.R) lo |= MockPte.R;
    if (prot & Perm.W) lo |= MockPte.W;
    if (prot & Perm.X) lo |= MockPte.X;
    out[0] = (oa | lo) >>> 0;
    out[1] = Math.floor(oa / 4294967296);
  },
  isDirty: (lo: number): boolean => (lo & MockPte.D) !== 0,
  clearDirty(lo: number, hi: number, _level: number, out: Uint32Array): void {
    out[0] = (lo & ~MockPte.D) >>> 0;
    out[1] = hi;
  },
};
