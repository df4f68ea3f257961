/**
 * First-stage paging entries: the IA-32e (x86-64) 4- and 5-level format. Intel VT-d
 * spec 9.7 ("First-Stage Paging Entries") and 3.6; Intel SDM vol. 3 4.5. P 0, R/W 1,
 * U/S 2, PWT 3, PCD 4, A 5, D 6 (leaf), PS 7 (PDE/PDPE), G 8 (leaf), EA 10 (with
 * EAFE), ADDR 51:12, XD 63; in a 2 MiB / 1 GiB leaf bit 12 is PAT and ADDR is 51:21 /
 * 51:30. Levels (as generic_pt): PTE = 0, PDE = 1 (2 MiB pages),
 * PDPE = 2 (1 GiB pages, CAP.FS1GP), PML4E = 3, PML5E = 4. 4-level input is 48 bits,
 * 5-level 57 bits, both canonical (sign-extended).
 */

import { Perm } from "@iommu-kit/core";
import type { PtFormat } from "@iommu-kit/core/driver";
import { EntryKind, field, setField } from "@iommu-kit/core/driver";
import { entryAddr } from "./ss-pte.ts";

/** Bit masks in the low 32-bit half; XD is bit 31 of the high half. */
export const FsPte = {
  P: 0x1,
  RW: 0x2,
  US: 0x4,
  PWT: 0x8,
  PCD: 0x10,
  A: 0x20,
  D: 0x40,
  PS: 0x80,
  G: 0x100,
  EA: 0x400,
  /** In the high half: bit 63. */
  XD_HI: 0x80000000,
} as const;

/** Decoded first-stage entry. */
export interface FsEntry {
  readonly p: boolean;
  readonly rw: boolean;
  readonly us: boolean;
  readonly pwt: boolean;
  readonly pcd: boolean;
  readonly a: boolean;
  readonly d: boolean;
  readonly ps: boolean;
  readonly g: boolean;
  readonly ea: boolean;
  readonly addr: number;
  readonly xd: boolean;
}

/** Encodes a first-stage entry. */
export function encodeFsEntry(e: FsEntry): bigint {
  const flags: Array<[boolean, number]> = [
    [e.p, 0],
    [e.rw, 1],
    [e.us, 2],
    [e.pwt, 3],
    [e.pcd, 4],
    [e.a, 5],
    [e.d, 6],
    [e.ps, 7],
    [e.g, 8],
    [e.ea, 10],
    [e.xd, 63],
  ];
  let v = 0n;
  for (const [on, n] of flags) if (on) v |= 1n << BigInt(n);
  return setField(v, 51, 12, BigInt(e.addr) >> 12n);
}

/** Decodes a first-stage entry. */
export function decodeFsEntry(v: bigint): FsEntry {
  const b = (n: number): boolean => field(v, n, n) === 1n;
  return {
    p: b(0),
    rw: b(1),
    us: b(2),
    pwt: b(3),
    pcd: b(4),
    a: b(5),
    d: b(6),
    ps: b(7),
    g: b(8),
    ea: b(10),
    addr: Number(field(v, 51, 12) << 12n),
    xd: b(63),
  };
}

/**
 * The first-stage format as a generic page-table plug-in. Entries are written with A
 * set and writable leaves with D set, so hardware never needs to update them (Linux
 * does the same for its first-stage tables). Leaves are user-accessible (U/S = 1);
 * XD is set unless `prot` has X.
 */
export function fsFormat(levels: number, maxLeafLevel: number): PtFormat {
  return {
    name: `vtd-fs-${levels}lvl`,
    granuleLg2: 12,
    levels,
    topTableLg2: 12,
    leafAllowed: (level) => level <= maxLeafLevel,
    linearLeafAddress: true, // ADDR[HAW-1:12] sits in place
    pageBits: { any: FsPte.P, all: 0 }, // a present PTE (spec 9.7)
    entryKind(lo, _hi, level) {
      if ((lo & FsPte.P) === 0) return EntryKind.EMPTY;
      if (level === 0 || lo & FsPte.PS) return EntryKind.LEAF;
      return EntryKind.TABLE;
    },
    // Bit 12 of a 2 MiB / 1 GiB leaf is PAT, not an address bit (spec 9.7).
    entryAddress: (lo, hi, level) => entryAddr(level > 0 && lo & FsPte.PS ? lo & ~0x1000 : lo, hi),
    leafPerm(lo, hi) {
      return Perm.R | (lo & FsPte.RW ? Perm.W : 0) | (hi & FsPte.XD_HI ? 0 : Perm.X);
    },
    encodeTable(tablePa, _level, out) {
      out[0] = ((tablePa % 4294967296) | FsPte.P | FsPte.RW | FsPte.US | FsPte.A) >>> 0;
      out[1] = Math.floor(tablePa / 4294967296) >>> 0;
    },
    encodeLeaf(oa, level, prot, out) {
      let lo = (oa % 4294967296) | FsPte.P | FsPte.US | FsPte.A;
      if (prot & Perm.W) lo |= FsPte.RW | FsPte.D;
      if (level > 0) lo |= FsPte.PS;
      let hi = Math.floor(oa / 4294967296);
      if (!(prot & Perm.X)) hi |= FsPte.XD_HI;
      out[0] = lo >>> 0;
      out[1] = hi >>> 0;
    },
  };
}
