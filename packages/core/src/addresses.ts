/**
 * Addresses. Every hot path carries addresses as plain numbers below 2^53 (exact
 * integers in a double). The branded types document which address space a value
 * lives in; they cost nothing at run time. Addresses at or above 2^53 (SMMUv3
 * TTB1 upper-range VAs, 57-bit VT-d first-stage inputs) enter through the
 * `...Big` entry points as bigint; physical addresses are at most 52 bits in every
 * supported architecture, so they are always numbers.
 */

declare const brand: unique symbol;
/** A number tagged with the address space it lives in (compile-time only). */
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** An I/O virtual address as a device issues it (input to stage 1, or to the only stage). */
export type Iova = Brand<number, "Iova">;
/** A guest-physical / intermediate-physical address (output of stage 1, input to stage 2). */
export type Gpa = Brand<number, "Gpa">;
/** A host-physical address: where a table or a DMA lands in {@link PhysicalMemory}. */
export type Hpa = Brand<number, "Hpa">;

/** Brands a number as an {@link Iova}. */
export const iova = (n: number): Iova => n as Iova;
/** Brands a number as a {@link Gpa}. */
export const gpa = (n: number): Gpa => n as Gpa;
/** Brands a number as an {@link Hpa}. */
export const hpa = (n: number): Hpa => n as Hpa;

/** The request carries no PASID / SubstreamID. */
export const NO_PASID = -1;

/** 2^32, for splitting a number into 32-bit halves. */
export const TWO_POW_32 = 4294967296;

/** Largest address that travels as a number on the hot path (2^53 - 1). */
export const MAX_NUMBER_ADDRESS: number = Number.MAX_SAFE_INTEGER;

/** True when `v` is an integer in [0, 2^53). */
export function isAddress(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}

/** True when `v` is a multiple of 2^`lg2` (exact for every safe integer). */
export function isAlignedLg2(v: number, lg2: number): boolean {
  return v % 2 ** lg2 === 0;
}

/** Rounds `v` down to a multiple of 2^`lg2`. */
export function alignDownLg2(v: number, lg2: number): number {
  return v - (v % 2 ** lg2);
}

/** Low 32 bits of an address (unsigned). */
export function lo32(v: number): number {
  return v >>> 0;
}

/** Bits 63:32 of an address below 2^53 (unsigned). */
export function hi32(v: number): number {
  return Math.floor(v / TWO_POW_32) >>> 0;
}

/** Joins two 32-bit halves into a number; exact while `hi` < 2^21. */
export function join32(lo: number, hi: number): number {
  return hi * TWO_POW_32 + (lo >>> 0);
}

/** Converts a bigint address to a number, throwing RangeError above 2^53 - 1. */
export function toNumberAddress(v: bigint): number {
  if (v < 0n || v > BigInt(MAX_NUMBER_ADDRESS))
    throw new RangeError(`address 0x${v.toString(16)} is not below 2^53`);
  return Number(v);
}

/** Parses "0x..." hex, a decimal string, a number or a bigint into a bigint. */
export function parseU64(v: string | number | bigint): bigint {
  const n = typeof v === "bigint" ? v : typeof v === "number" ? BigInt(v) : BigInt(v.trim());
  if (n < 0n || n >= 1n << 64n) throw new RangeError(`${String(v)} is not a 64-bit unsigned value`);
  return n;
}
