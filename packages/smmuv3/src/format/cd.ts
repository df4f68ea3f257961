/**
 * Context Descriptor (CD) codec: 64 bytes, ARM IHI 0070 section 5.4, positions
 * cross-checked with Linux arm-smmu-v3.h (CTXDESC_CD_*). Also the Level-1 CD
 * descriptor of 2-level CD tables (5.3: V [0], L2Ptr [51:12]). The TCR-like fields
 * configure a stage-1 VMSAv8-64 walk (see lpae-pte.ts for the level mapping).
 */

import type { FieldSpec, FieldValues } from "./fields.ts";
import { packFields, unpackFields } from "./fields.ts";

/** CD field positions: [name, 64-bit word, msb, lsb] (5.4). */
export const CD_FIELDS: readonly FieldSpec[] = [
  ["T0SZ", 0, 5, 0],
  ["TG0", 0, 7, 6],
  ["IR0", 0, 9, 8],
  ["OR0", 0, 11, 10],
  ["SH0", 0, 13, 12],
  ["EPD0", 0, 14, 14],
  ["ENDI", 0, 15, 15],
  ["T1SZ", 0, 21, 16],
  ["TG1", 0, 23, 22],
  ["IR1", 0, 25, 24],
  ["OR1", 0, 27, 26],
  ["SH1", 0, 29, 28],
  ["EPD1", 0, 30, 30],
  ["V", 0, 31, 31],
  ["IPS", 0, 34, 32],
  ["AFFD", 0, 35, 35],
  ["WXN", 0, 36, 36],
  ["UWXN", 0, 37, 37],
  ["TBI", 0, 39, 38],
  ["PAN", 0, 40, 40],
  ["AA64", 0, 41, 41],
  ["HD", 0, 42, 42],
  ["HA", 0, 43, 43],
  ["S", 0, 44, 44],
  ["R", 0, 45, 45],
  ["A", 0, 46, 46],
  ["ASET", 0, 47, 47],
  ["ASID", 0, 63, 48],
  ["NSCFG0", 1, 0, 0],
  ["HAD0", 1, 1, 1],
  ["TTB0", 1, 51, 4],
  ["NSCFG1", 2, 0, 0],
  ["HAD1", 2, 1, 1],
  ["TTB1", 2, 51, 4],
  ["MAIR", 3, 63, 0],
  ["AMAIR", 4, 63, 0],
];

/** Bytes of one CD. */
export const CD_BYTES = 64;

/** TG0 encodings (5.4): 0 = 4K, 1 = 64K, 2 = 16K; 3 reserved. Value = log2 granule, 0 = reserved. */
export const TG0_LG2: readonly number[] = [12, 16, 14, 0];
/** TG1 encodings (5.4): 1 = 16K, 2 = 4K, 3 = 64K; 0 reserved. */
export const TG1_LG2: readonly number[] = [0, 14, 12, 16];

/** Encodes a CD; TTB0/TTB1 are full addresses (stored from bit 4). */
export function encodeCd(values: Readonly<Record<string, bigint | number>>): bigint[] {
  const v: Record<string, bigint | number> = { ...values };
  if (v.TTB0 !== undefined) v.TTB0 = BigInt(v.TTB0) >> 4n;
  if (v.TTB1 !== undefined) v.TTB1 = BigInt(v.TTB1) >> 4n;
  return packFields(CD_FIELDS, 8, v);
}

/** Decodes a CD; TTB0/TTB1 come back as full addresses. */
export function decodeCd(words: readonly bigint[]): FieldValues {
  const f = unpackFields(CD_FIELDS, words);
  f.TTB0 = f.TTB0! << 4n;
  f.TTB1 = f.TTB1! << 4n;
  return f;
}

/** Encodes a Level-1 CD descriptor (5.3): V [0], L2Ptr [51:12]. */
export function encodeL1Cd(valid: boolean, l2ptr: bigint | number): bigint {
  return packFields(
    [
      ["V", 0, 0, 0],
      ["L2Ptr", 0, 51, 12],
    ],
    1,
    { V: valid ? 1 : 0, L2Ptr: BigInt(l2ptr) >> 12n },
  )[0]!;
}

/** Decodes a Level-1 CD descriptor. */
export function decodeL1Cd(word: bigint): { valid: boolean; l2ptr: bigint } {
  return { valid: (word & 1n) === 1n, l2ptr: word & 0x000f_ffff_ffff_f000n };
}
