/**
 * Number helpers shared by the hardware rooms: 2^i without Math.pow on the walk and
 * queue paths, 64-bit addresses as two 32-bit halves (ARM IHI 0070 structures are
 * little-endian 64-bit words, 3.2), and the hex a narration or fault field shows.
 */

/** 2^32: the weight of a 64-bit word's high half. */
export const TWO32 = 4294967296;
/** 2^i for i in [0, 127] (an index outside reads undefined: callers fall back to `2 ** i`). */
export const POW2: Float64Array = Float64Array.from({ length: 128 }, (_, i) => 2 ** i);

/** `0x` + lowercase hex. */
export const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/** The first `n` 64-bit words of `w` (32-bit halves, low first) as 16-digit hex. */
export function rawWords(w: Uint32Array, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++)
    out.push(`0x${w[2 * i + 1]!.toString(16).padStart(8, "0")}${w[2 * i]!.toString(16).padStart(8, "0")}`);
  return out;
}
