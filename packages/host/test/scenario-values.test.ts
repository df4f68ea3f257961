import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bytesToHex,
  hexToBytes,
  isNumberLike,
  jsonable,
  toBig,
  toHex,
  toNum,
} from "../src/scenario/values.ts";

describe("scenario values", () => {
  it("reads numbers, hex strings and decimal strings", () => {
    expect(toNum("0x1000")).toBe(4096);
    expect(toNum("4096")).toBe(4096);
    expect(toNum(4096)).toBe(4096);
    expect(toBig("0xffffffffffffffff")).toBe(2n ** 64n - 1n);
  });
  it("refuses what is not a number", () => {
    expect(() => toNum("0x")).toThrow(RangeError);
    expect(() => toNum("12k")).toThrow(RangeError);
    expect(() => toNum(1.5)).toThrow(RangeError);
    expect(() => toNum("0x20000000000000")).toThrow(/2\^53/);
    expect(isNumberLike("deadbeef")).toBe(false);
    expect(isNumberLike("0xdeadbeef")).toBe(true);
    expect(isNumberLike(Number.NaN)).toBe(false);
  });
  it("hex round-trips for every safe integer", () => {
    fc.assert(fc.property(fc.maxSafeNat(), (n) => toNum(toHex(n)) === n));
  });
  it("bytes round-trip through hex text", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(hexToBytes(bytesToHex(b))).toEqual(b);
      }),
    );
    expect(hexToBytes("0xDE ad_BE ef")).toEqual(new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    expect(() => hexToBytes("abc")).toThrow(/odd/);
    expect(() => hexToBytes("zz")).toThrow(/hex digit/);
  });
  it("makes results JSON-able", () => {
    expect(
      jsonable({ a: 1n << 60n, d: new Uint8Array([1, 255]), m: new Map([[1, 2n]]), u: undefined, l: [3n] }),
    ).toEqual({
      a: "0x1000000000000000",
      d: "01ff",
      m: { "1": "0x2" },
      l: ["0x3"],
    });
  });
});
