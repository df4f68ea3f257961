import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { FaultJson, Outcome } from "../src/scenario/matcher.ts";
import { checkExpect, faultMatches, matchValue } from "../src/scenario/matcher.ts";
import { bytesToHex, toHex } from "../src/scenario/values.ts";

const fault: FaultJson = {
  class: "translation",
  name: "F_TRANSLATION",
  code: 0x10,
  recorded: true,
  vendor: "arm-smmuv3",
  fields: { StreamID: 16, InputAddr: "0x9000" },
};
const ok = (result: Record<string, unknown>): Outcome => ({ kind: "result", result });
const faulted: Outcome = { kind: "fault", fault, result: { fault } };
const failed: Outcome = { kind: "error", error: { code: "EBUSY", message: "EBUSY: domain 3 is attached" } };

describe("matchValue", () => {
  it("matches numbers by value across number and hex string forms", () => {
    expect(matchValue({ iova: 4096 }, { iova: "0x1000" })).toEqual([]);
    expect(matchValue({ iova: "0x1000" }, { iova: 4096 })).toEqual([]);
    expect(matchValue({ iova: "0X1000" }, { iova: "0x1000" })).toEqual([]);
    expect(matchValue({ iova: "0x1000" }, { iova: 4096n })).toEqual([]);
    expect(matchValue({ iova: "0x1001" }, { iova: "0x1000" })).toEqual([
      'iova: expected "0x1001", got "0x1000"',
    ]);
  });
  it("ignores fields the expectation does not name", () => {
    expect(matchValue({ pa: "0x2000" }, { pa: "0x2000", data: "ff", extra: 1 })).toEqual([]);
  });
  it("reports a missing field", () => {
    expect(matchValue({ pasid: 1 }, { hwpt: "h" })).toEqual(["pasid: expected 1, got nothing"]);
  });
  it("matches hex data case-insensitively, ignoring 0x and spaces", () => {
    expect(matchValue({ data: "DEADBEEF" }, { data: "deadbeef" })).toEqual([]);
    expect(matchValue({ data: "0xde ad be ef" }, { data: "deadbeef" })).toEqual([]);
    expect(matchValue({ data: "00ff" }, { data: "ff" })).toHaveLength(1);
    expect(matchValue({ bitmap: "0F" }, { bitmap: new Uint8Array([15]) })).toEqual([]);
  });
  it("matches arrays element by element with the same length", () => {
    expect(matchValue({ pages: ["0x1000", 8192] }, { pages: [4096, "0x2000"] })).toEqual([]);
    expect(matchValue({ pages: ["0x1000"] }, { pages: [4096, 8192] })[0]).toMatch(
      /expected 1 elements, got 2/,
    );
    expect(matchValue({ pages: [1, 3] }, { pages: [1, 2] })).toEqual(["pages[1]: expected 3, got 2"]);
  });
  it("matches nested objects partially", () => {
    expect(matchValue({ ranges: [{ start: 0 }] }, { ranges: [{ start: "0x0", last: "0xff" }] })).toEqual([]);
    expect(matchValue({ ranges: [{ last: 1 }] }, { ranges: [{ start: "0x0", last: "0xff" }] })).toEqual([
      'ranges[0].last: expected 1, got "0xff"',
    ]);
  });
  it("compares non-numeric strings and booleans exactly", () => {
    expect(matchValue({ type: "arm-smmuv3" }, { type: "arm-smmuv3" })).toEqual([]);
    expect(matchValue({ type: "intel-vtd" }, { type: "arm-smmuv3" })).toHaveLength(1);
    expect(matchValue({ ok: true }, { ok: false })).toHaveLength(1);
    expect(matchValue({ v: null }, { v: null })).toEqual([]);
  });
});

describe("matchValue properties", () => {
  it("a number matches itself in every written form, and nothing else", () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), fc.maxSafeNat(), (n, m) => {
        const forms = [n, BigInt(n), toHex(n), toHex(n).toUpperCase().replace("0X", "0x"), String(n)];
        for (const a of forms) for (const b of forms) expect(matchValue({ v: a }, { v: b })).toEqual([]);
        if (m !== n) expect(matchValue({ v: toHex(m) }, { v: n })).toHaveLength(1);
      }),
    );
  });
  it("hex data matches in either case and nothing of another value", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 32 }), (b) => {
        const h = bytesToHex(b);
        expect(matchValue({ data: h.toUpperCase() }, { data: h })).toEqual([]);
        const other = b.slice();
        other[0] = (other[0]! + 1) & 0xff;
        expect(matchValue({ data: bytesToHex(other) }, { data: h })).toHaveLength(1);
      }),
    );
  });
});

describe("faultMatches", () => {
  it("accepts the vendor name, the vendor code (number or hex), the class or true", () => {
    expect(faultMatches("F_TRANSLATION", fault)).toBe(true);
    expect(faultMatches(16, fault)).toBe(true);
    expect(faultMatches("0x10", fault)).toBe(true);
    expect(faultMatches("translation", fault)).toBe(true);
    expect(faultMatches(true, fault)).toBe(true);
  });
  it("rejects another name, code or class", () => {
    expect(faultMatches("F_PERMISSION", fault)).toBe(false);
    expect(faultMatches(0x13, fault)).toBe(false);
    expect(faultMatches("permission", fault)).toBe(false);
    expect(faultMatches(false, fault)).toBe(false);
  });
  it("matches an object against the fault's fields", () => {
    expect(faultMatches({ name: "F_TRANSLATION", fields: { StreamID: "0x10" } }, fault)).toBe(true);
    expect(faultMatches({ fields: { StreamID: 17 } }, fault)).toBe(false);
  });
  it("never matches a code when the spec raises none", () => {
    const silent: FaultJson = { ...fault, class: "blocked", name: "STE_ABORT", code: null, recorded: false };
    expect(faultMatches(0, silent)).toBe(false);
    expect(faultMatches("blocked", silent)).toBe(true);
  });
});

describe("checkExpect", () => {
  it("passes a result or a fault without expectation, fails an error", () => {
    expect(checkExpect(undefined, ok({ iova: 1 }))).toEqual([]);
    expect(checkExpect(undefined, faulted)).toEqual([]);
    expect(checkExpect(undefined, failed)[0]).toMatch(/unexpected error EBUSY/);
  });
  it("matches errors by errno name or true", () => {
    expect(checkExpect({ error: "EBUSY" }, failed)).toEqual([]);
    expect(checkExpect({ error: true }, failed)).toEqual([]);
    expect(checkExpect({ error: "ENOENT" }, failed)[0]).toMatch(/expected ENOENT, got EBUSY/);
    expect(checkExpect({ error: "EBUSY" }, ok({}))[0]).toMatch(/succeeded/);
    expect(checkExpect({ iova: 1 }, failed)[0]).toMatch(/expected success/);
  });
  it("requires a fault when one is expected and none otherwise", () => {
    expect(checkExpect({ fault: "F_TRANSLATION" }, faulted)).toEqual([]);
    expect(checkExpect({ fault: true }, ok({ pa: 1 }))[0]).toMatch(/did not fault/);
    expect(checkExpect({ pa: 1 }, faulted)[0]).toMatch(
      /expected no fault, got F_TRANSLATION \(0x10, translation\)/,
    );
    expect(checkExpect({ fault: "F_PERMISSION" }, faulted)[0]).toMatch(/fault: expected "F_PERMISSION"/);
  });
  it("checks the other fields of a successful result", () => {
    expect(checkExpect({ pa: "0x2000", data: "AB" }, ok({ pa: "0x2000", data: "ab" }))).toEqual([]);
    expect(checkExpect({ pa: "0x3000" }, ok({ pa: "0x2000" }))).toEqual([
      'pa: expected "0x3000", got "0x2000"',
    ]);
  });
});
