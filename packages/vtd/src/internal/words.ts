/**
 * Little-endian conversions between 64-bit words (bigint) and bytes, for the codecs
 * and golden tests (slow path), and 64-bit reads/writes of entries in memory.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";

/** The bytes of `words` (64-bit each), little-endian. */
export function wordsToBytes(words: readonly bigint[]): Uint8Array {
  const out = new Uint8Array(words.length * 8);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < words.length; i++) dv.setBigUint64(i * 8, BigInt.asUintN(64, words[i]!), true);
  return out;
}

/** The 64-bit words of `bytes` (length a multiple of 8), little-endian. */
export function bytesToWords(bytes: Uint8Array): bigint[] {
  if (bytes.length % 8 !== 0)
    throw new IommuError("EINVAL", `${bytes.length} bytes is not whole 64-bit words`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: bigint[] = [];
  for (let i = 0; i < bytes.length; i += 8) out.push(dv.getBigUint64(i, true));
  return out;
}

/** Lower-case hex of bytes, no separators. */
export function bytesHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Reads `n` 64-bit words at `pa`; null on a bus error. */
export function readWords(memory: PhysicalMemory, pa: number, n: number): bigint[] | null {
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const at = pa + i * 8;
    if (!memory.isRam(at)) return null;
    out.push(memory.read64(at));
  }
  return out;
}

/** Writes 64-bit words at `pa` (all RAM: table memory from the allocator). */
export function writeWords(memory: PhysicalMemory, pa: number, words: readonly bigint[]): void {
  for (let i = 0; i < words.length; i++) memory.write64(pa + i * 8, words[i]!);
}

/** 0x-prefixed hex of a 64-bit word, 16 digits. */
export function hex64(v: bigint): string {
  return `0x${BigInt.asUintN(64, v).toString(16).padStart(16, "0")}`;
}
