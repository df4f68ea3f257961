/**
 * PASID directory entries (8 bytes, indexed by PASID bits 19:6) and scalable-mode
 * PASID table entries (64 bytes, indexed by PASID bits 5:0). Intel VT-d spec 9.5
 * (Scalable-Mode PASID Directory Entry) and 9.6 (Scalable-Mode PASID Table Entry);
 * setters cross-checked with Linux drivers/iommu/intel/pasid.h. Directory: P 0, FPD 1,
 * SMPTBLPTR 63:12. Table entry: P 0, FPD 1, AW 4:2, SSEE 5, PGTT 8:6, SSADE 9,
 * SSPTPTR 63:12; DID 79:64, PWSNP 87, PGSNP 88; SRE 128, FSPM 131:130, WPE 132,
 * EAFE 135, FSPTPTR 191:140. Not a paging level: no level numbers apply.
 */

import { field, setField } from "@iommu-kit/core/driver";

/** Bytes of a PASID directory entry. */
export const PASID_DIR_ENTRY_BYTES = 8;
/** Bytes of a PASID table entry. */
export const PASID_ENTRY_BYTES = 64;

/** PGTT values (spec 9.6). 0 and 5-7 are reserved. */
export const Pgtt = {
  FIRST_STAGE: 1,
  SECOND_STAGE: 2,
  NESTED: 3,
  PASS_THROUGH: 4,
} as const;

/** A PASID directory entry. */
export interface PasidDirEntry {
  readonly present: boolean;
  readonly fpd: boolean;
  /** PASID table pointer, 4 KiB aligned. */
  readonly tablePtr: number;
}

/** Encodes a PASID directory entry. */
export function encodePasidDirEntry(e: PasidDirEntry): bigint {
  let w = setField(0n, 0, 0, e.present ? 1 : 0);
  w = setField(w, 1, 1, e.fpd ? 1 : 0);
  return setField(w, 63, 12, BigInt(e.tablePtr) >> 12n);
}

/** Decodes a PASID directory entry; `reserved` for bits 11:2. */
export function decodePasidDirEntry(w: bigint): PasidDirEntry & { readonly reserved: boolean } {
  return {
    present: field(w, 0, 0) === 1n,
    fpd: field(w, 1, 1) === 1n,
    tablePtr: Number(field(w, 63, 12) << 12n),
    reserved: field(w, 11, 2) !== 0n,
  };
}

/** A scalable-mode PASID table entry. */
export interface PasidEntry {
  readonly present: boolean;
  readonly fpd: boolean;
  /** Second-stage address width (1 = 3-level, 2 = 4-level, 3 = 5-level). */
  readonly aw: number;
  /** Second-stage execute enable. */
  readonly ssee: boolean;
  /** PASID-granular translation type ({@link Pgtt}). */
  readonly pgtt: number;
  /** Second-stage accessed/dirty enable. */
  readonly ssade: boolean;
  readonly ssptptr: number;
  readonly did: number;
  /** Page-walk snoop. */
  readonly pwsnp: boolean;
  /** Page snoop. */
  readonly pgsnp: boolean;
  /** Supervisor request enable. */
  readonly sre: boolean;
  /** First-stage paging mode: 0 = 4-level, 1 = 5-level. */
  readonly fspm: number;
  /** Write protect enable (supervisor writes honour R/W). */
  readonly wpe: boolean;
  /** Extended-accessed flag enable. */
  readonly eafe: boolean;
  readonly fsptptr: number;
}

/** A PASID entry with every field clear. */
export const EMPTY_PASID_ENTRY: PasidEntry = Object.freeze({
  present: false,
  fpd: false,
  aw: 0,
  ssee: false,
  pgtt: 0,
  ssade: false,
  ssptptr: 0,
  did: 0,
  pwsnp: false,
  pgsnp: false,
  sre: false,
  fspm: 0,
  wpe: false,
  eafe: false,
  fsptptr: 0,
});

/** Encodes a PASID table entry as eight 64-bit words. */
export function encodePasidEntry(e: PasidEntry): bigint[] {
  let w0 = setField(0n, 0, 0, e.present ? 1 : 0);
  w0 = setField(w0, 1, 1, e.fpd ? 1 : 0);
  w0 = setField(w0, 4, 2, e.aw);
  w0 = setField(w0, 5, 5, e.ssee ? 1 : 0);
  w0 = setField(w0, 8, 6, e.pgtt);
  w0 = setField(w0, 9, 9, e.ssade ? 1 : 0);
  w0 = setField(w0, 63, 12, BigInt(e.ssptptr) >> 12n);
  let w1 = setField(0n, 15, 0, e.did);
  w1 = setField(w1, 23, 23, e.pwsnp ? 1 : 0);
  w1 = setField(w1, 24, 24, e.pgsnp ? 1 : 0);
  let w2 = setField(0n, 0, 0, e.sre ? 1 : 0);
  w2 = setField(w2, 3, 2, e.fspm);
  w2 = setField(w2, 4, 4, e.wpe ? 1 : 0);
  w2 = setField(w2, 7, 7, e.eafe ? 1 : 0);
  w2 = setField(w2, 63, 12, BigInt(e.fsptptr) >> 12n);
  return [w0, w1, w2, 0n, 0n, 0n, 0n, 0n];
}

/**
 * Decodes a PASID table entry. `reserved` is true for bits 11:10, 22:16 of word 1,
 * 11:8 of word 2 or any bit of words 3-7 (the walker adds the address-width checks,
 * which depend on HAW). Bits 129 (ERE), 133 (NXE) and 134 (SMEP) of word 2 belong to
 * Execute-Requested support, which the spec removed (rev 3.3): they are ignored, not
 * reserved, since Linux up to 6.9 sets NXE in every first-stage entry
 * (pasid_set_nxe, dropped by "iommu/vt-d: Remove control over Execute-Requested
 * requests") and hardware and QEMU accept it.
 */
export function decodePasidEntry(w: readonly bigint[]): PasidEntry & { readonly reserved: boolean } {
  const w0 = w[0] ?? 0n;
  const w1 = w[1] ?? 0n;
  const w2 = w[2] ?? 0n;
  let rest = 0n;
  for (let i = 3; i < 8; i++) rest |= w[i] ?? 0n;
  return {
    present: field(w0, 0, 0) === 1n,
    fpd: field(w0, 1, 1) === 1n,
    aw: Number(field(w0, 4, 2)),
    ssee: field(w0, 5, 5) === 1n,
    pgtt: Number(field(w0, 8, 6)),
    ssade: field(w0, 9, 9) === 1n,
    ssptptr: Number(field(w0, 63, 12) << 12n),
    did: Number(field(w1, 15, 0)),
    pwsnp: field(w1, 23, 23) === 1n,
    pgsnp: field(w1, 24, 24) === 1n,
    sre: field(w2, 0, 0) === 1n,
    fspm: Number(field(w2, 3, 2)),
    wpe: field(w2, 4, 4) === 1n,
    eafe: field(w2, 7, 7) === 1n,
    fsptptr: Number(field(w2, 63, 12) << 12n),
    reserved: field(w0, 11, 10) !== 0n || field(w1, 22, 16) !== 0n || field(w2, 11, 8) !== 0n || rest !== 0n,
  };
}
