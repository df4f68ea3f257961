/**
 * Stream Table Entry (STE) codec: 64 bytes, eight 64-bit words, ARM IHI 0070 section 5.2
 * ("Stream Table Entry"), positions cross-checked with Linux
 * drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h (STRTAB_STE_*). Also the Level-1 Stream
 * Table Descriptor (section 5.1, L1STD: Span, L2Ptr). STEs have no lookup levels; the
 * stage-2 fields configure a VMSAv8-64 walk whose start level S2SL0 names (see lpae-pte.ts).
 */

import type { FieldSpec, FieldValues } from "./fields.ts";
import { packFields, unpackFields } from "./fields.ts";

/** STE.Config values (5.2, bits [3:1]). 0b0xx aborts without an event. */
export const SteConfig = {
  ABORT: 0b000,
  BYPASS: 0b100,
  S1_TRANS: 0b101,
  S2_TRANS: 0b110,
  NESTED: 0b111,
} as const;

/** STE.S1Fmt (5.2 bits [5:4]): linear CD table, or 2-level with 4K / 64K leaf tables. */
export const S1Fmt = { LINEAR: 0, L2_4K: 1, L2_64K: 2 } as const;

/** STE.S1DSS (5.2 word 1 bits [1:0]): non-substream DMA when S1CDMax > 0. */
export const S1Dss = { TERMINATE: 0, BYPASS: 1, SSID0: 2 } as const;

/** STE field positions: [name, 64-bit word, msb, lsb] (5.2). */
export const STE_FIELDS: readonly FieldSpec[] = [
  ["V", 0, 0, 0],
  ["Config", 0, 3, 1],
  ["S1Fmt", 0, 5, 4],
  ["S1ContextPtr", 0, 51, 6],
  ["S1CDMax", 0, 63, 59],
  ["S1DSS", 1, 1, 0],
  ["S1CIR", 1, 3, 2],
  ["S1COR", 1, 5, 4],
  ["S1CSH", 1, 7, 6],
  ["MEV", 1, 19, 19],
  ["S1STALLD", 1, 27, 27],
  ["EATS", 1, 29, 28],
  ["STRW", 1, 31, 30],
  ["SHCFG", 1, 45, 44],
  ["S2VMID", 2, 15, 0],
  ["S2T0SZ", 2, 37, 32],
  ["S2SL0", 2, 39, 38],
  ["S2IR0", 2, 41, 40],
  ["S2OR0", 2, 43, 42],
  ["S2SH0", 2, 45, 44],
  ["S2TG", 2, 47, 46],
  ["S2PS", 2, 50, 48],
  ["S2AA64", 2, 51, 51],
  ["S2ENDI", 2, 52, 52],
  ["S2AFFD", 2, 53, 53],
  ["S2PTW", 2, 54, 54],
  ["S2HD", 2, 55, 55],
  ["S2HA", 2, 56, 56],
  ["S2S", 2, 57, 57],
  ["S2R", 2, 58, 58],
  ["S2TTB", 3, 51, 4],
];

/** Bytes of one STE. */
export const STE_BYTES = 64;

/**
 * Encodes an STE from field values (addresses in place: S1ContextPtr and S2TTB are
 * given as full addresses and stored from bit 6 / bit 4 up).
 */
export function encodeSte(values: Readonly<Record<string, bigint | number>>): bigint[] {
  const v: Record<string, bigint | number> = { ...values };
  if (v.S1ContextPtr !== undefined) v.S1ContextPtr = BigInt(v.S1ContextPtr) >> 6n;
  if (v.S2TTB !== undefined) v.S2TTB = BigInt(v.S2TTB) >> 4n;
  return packFields(STE_FIELDS, 8, v);
}

/** Decodes an STE; S1ContextPtr and S2TTB come back as full addresses. */
export function decodeSte(words: readonly bigint[]): FieldValues {
  const f = unpackFields(STE_FIELDS, words);
  f.S1ContextPtr = f.S1ContextPtr! << 6n;
  f.S2TTB = f.S2TTB! << 4n;
  return f;
}

/** L1STD positions (5.1): Span [4:0], L2Ptr [51:6]. */
export const L1STD_FIELDS: readonly FieldSpec[] = [
  ["Span", 0, 4, 0],
  ["L2Ptr", 0, 51, 6],
];

/** Encodes a Level-1 Stream Table Descriptor (`l2ptr` a full address). */
export function encodeL1Std(span: number, l2ptr: bigint | number): bigint {
  return packFields(L1STD_FIELDS, 1, { Span: span, L2Ptr: BigInt(l2ptr) >> 6n })[0]!;
}

/** Decodes a Level-1 Stream Table Descriptor. */
export function decodeL1Std(word: bigint): { span: number; l2ptr: bigint } {
  const f = unpackFields(L1STD_FIELDS, [word]);
  return { span: Number(f.Span), l2ptr: f.L2Ptr! << 6n };
}
