/**
 * Field tables for byte-exact codecs: each field of a structure is named by the spec's
 * name and located as (64-bit word index, msb, lsb), exactly as ARM IHI 0070 draws the
 * structure. Encoding and decoding are slow-path (bigint); the hardware model reads the
 * same positions as 32-bit halves.
 */

/** One field: [name, 64-bit word index, msb, lsb] (bits within that word). */
export type FieldSpec = readonly [name: string, word: number, msb: number, lsb: number];

/** Decoded fields by name. */
export type FieldValues = Record<string, bigint>;

/** Packs named values into `words` 64-bit words; unknown names throw RangeError, values are truncated to the field. */
export function packFields(
  table: readonly FieldSpec[],
  words: number,
  values: Readonly<Record<string, bigint | number>>,
): bigint[] {
  const out: bigint[] = new Array<bigint>(words).fill(0n);
  for (const [name, v] of Object.entries(values)) {
    const f = table.find((x) => x[0] === name);
    if (f === undefined) throw new RangeError(`unknown field ${name}`);
    const [, w, msb, lsb] = f;
    const mask = ((1n << BigInt(msb - lsb + 1)) - 1n) << BigInt(lsb);
    out[w] = (out[w]! & ~mask) | ((BigInt(v) << BigInt(lsb)) & mask);
  }
  return out;
}

/** Unpacks every field of the table from `words`. */
export function unpackFields(table: readonly FieldSpec[], words: readonly bigint[]): FieldValues {
  const out: FieldValues = {};
  for (const [name, w, msb, lsb] of table) {
    out[name] = ((words[w] ?? 0n) >> BigInt(lsb)) & ((1n << BigInt(msb - lsb + 1)) - 1n);
  }
  return out;
}

/** Little-endian bytes of 64-bit words. */
export function wordsToBytes(words: readonly bigint[]): Uint8Array {
  const out = new Uint8Array(words.length * 8);
  const view = new DataView(out.buffer);
  for (let i = 0; i < words.length; i++) view.setBigUint64(i * 8, BigInt.asUintN(64, words[i]!), true);
  return out;
}

/** 64-bit words of little-endian bytes (length a multiple of 8). */
export function bytesToWords(bytes: Uint8Array): bigint[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: bigint[] = [];
  for (let i = 0; i + 8 <= bytes.length; i += 8) out.push(view.getBigUint64(i, true));
  return out;
}

/** Bytes as lowercase hex, no separators. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Hex (whitespace ignored) to bytes. */
export function fromHex(hex: string): Uint8Array {
  const h = hex.replace(/\s+/g, "");
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
