/**
 * Scenario values: every number in a scenario file may be a JSON number or a hex
 * string ("0x1000"); byte data is hex text. These helpers convert both ways and say
 * which field was wrong when a value does not fit.
 */

/** A number as scenario files write it. */
export type NumberLike = number | string | bigint;

const HEX_RE = /^0x[0-9a-f]+$/i;
const DEC_RE = /^[0-9]+$/;

/** True when `v` is a number, a bigint, or a string holding a hex ("0x...") or decimal number. */
export function isNumberLike(v: unknown): v is NumberLike {
  if (typeof v === "number") return Number.isFinite(v);
  if (typeof v === "bigint") return true;
  return typeof v === "string" && (HEX_RE.test(v.trim()) || DEC_RE.test(v.trim()));
}

/** The value of a number-like as a bigint; throws RangeError for anything else. */
export function toBig(v: NumberLike): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new RangeError(`${v} is not an integer`);
    return BigInt(v);
  }
  const s = v.trim();
  if (!HEX_RE.test(s) && !DEC_RE.test(s))
    throw new RangeError(`${JSON.stringify(v)} is not a number or 0x hex string`);
  return BigInt(s);
}

/** The value of a number-like as a safe integer; throws RangeError at or above 2^53. */
export function toNum(v: NumberLike): number {
  const b = toBig(v);
  if (b < BigInt(Number.MIN_SAFE_INTEGER) || b > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`${String(v)} does not fit below 2^53`);
  }
  return Number(b);
}

/** 0x-prefixed lower-case hex of a number or bigint. */
export function toHex(v: number | bigint): string {
  return v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`;
}

/** Bytes from hex text (optional 0x, whitespace and "_" ignored); throws RangeError on odd length or bad digits. */
export function hexToBytes(text: string): Uint8Array {
  let s = text.replace(/[\s_]/g, "");
  if (s.startsWith("0x") || s.startsWith("0X")) s = s.slice(2);
  if (s.length % 2 !== 0) throw new RangeError(`hex data has an odd number of digits (${s.length})`);
  if (!/^[0-9a-fA-F]*$/.test(s)) throw new RangeError("hex data has a character that is not a hex digit");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Lower-case hex text of bytes, no prefix. */
export function bytesToHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * A JSON-able copy of a result: bigints become 0x hex strings, byte arrays hex text,
 * Maps objects; everything else is copied as is.
 */
export function jsonable(v: unknown): unknown {
  if (typeof v === "bigint") return toHex(v);
  if (v instanceof Uint8Array) return bytesToHex(v);
  if (Array.isArray(v)) return v.map(jsonable);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), jsonable(x)]));
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = jsonable(x);
    return out;
  }
  return v;
}
