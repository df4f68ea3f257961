/**
 * Bit-field helpers for descriptors held as 32-bit halves (no BigInt on the hot path).
 * Bit numbers follow the specs: bit 0 is the least significant bit of word 0, and a
 * 64-bit field spans bits 63:0 over (lo, hi).
 */

import { TWO_POW_32 } from "../addresses.ts";

/** Bits [msb:lsb] of a 32-bit word, unsigned (0 <= lsb <= msb <= 31). */
export function bits32(word: number, msb: number, lsb: number): number {
  const width = msb - lsb + 1;
  return width === 32 ? word >>> 0 : (word >>> lsb) & ((1 << width) - 1);
}

/** Bit `n` (0..31) of a 32-bit word as 0 or 1. */
export function bit32(word: number, n: number): number {
  return (word >>> n) & 1;
}

/** `word` with bits [msb:lsb] replaced by `value` (truncated to the field), unsigned. */
export function setBits32(word: number, msb: number, lsb: number, value: number): number {
  const width = msb - lsb + 1;
  const mask = width === 32 ? 0xffffffff : ((1 << width) - 1) << lsb;
  return ((word & ~mask) | ((value << lsb) & mask)) >>> 0;
}

/**
 * Bits [msb:lsb] of the 64-bit value (lo, hi) as a number (at most 53 bits wide).
 */
export function bits64(lo: number, hi: number, msb: number, lsb: number): number {
  if (lsb >= 32) return bits32(hi, msb - 32, lsb - 32);
  if (msb < 32) return bits32(lo, msb, lsb);
  return bits32(hi, msb - 32, 0) * 2 ** (32 - lsb) + (lo >>> lsb);
}

/**
 * The address held in bits [msb:lsb] of (lo, hi), in place (bits below lsb zero):
 * `addressField(lo, hi, 47, 12)` is a 4K-granule descriptor's OA. msb <= 52.
 */
export function addressField(lo: number, hi: number, msb: number, lsb: number): number {
  return bits64(lo, hi, msb, lsb) * 2 ** lsb;
}

/** Joins halves into a number (exact while hi < 2^21). */
export function join64(lo: number, hi: number): number {
  return (hi >>> 0) * TWO_POW_32 + (lo >>> 0);
}

/** A bigint from two 32-bit halves. */
export function toBigInt64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** The 32-bit halves of a 64-bit bigint. */
export function halves64(v: bigint): [lo: number, hi: number] {
  return [Number(v & 0xffffffffn), Number((v >> 32n) & 0xffffffffn)];
}

/** Field [msb:lsb] of a bigint (slow path: codecs, golden tests). */
export function field(v: bigint, msb: number, lsb: number): bigint {
  return (v >> BigInt(lsb)) & ((1n << BigInt(msb - lsb + 1)) - 1n);
}

/** `v` with field [msb:lsb] set to `value` (truncated to the field). */
export function setField(v: bigint, msb: number, lsb: number, value: bigint | number): bigint {
  const mask = ((1n << BigInt(msb - lsb + 1)) - 1n) << BigInt(lsb);
  return (v & ~mask) | ((BigInt(value) << BigInt(lsb)) & mask);
}

/** 64-bit hex with 0x and 16 digits, for dumps. */
export function hex64(v: bigint): string {
  return `0x${v.toString(16).padStart(16, "0")}`;
}
