import { EntryKind } from "@iommu-kit/core/driver";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bytesToWords,
  CD_FIELDS,
  CmdOp,
  decodeCd,
  decodeCommand,
  decodeEvent,
  decodeL1Cd,
  decodeL1Std,
  decodePte,
  decodeSte,
  encodeCd,
  encodeCommand,
  encodeEvent,
  encodeL1Cd,
  encodeL1Std,
  encodeLeafPte,
  encodeSte,
  encodeTablePte,
  fromHex,
  lpaeFormat,
  lpaeGeometry,
  ResumeResp,
  STE_FIELDS,
  toHex,
  wordsToBytes,
} from "../src/index.ts";

const hexOf = (words: readonly bigint[]): string => toHex(wordsToBytes(words));

describe("STE golden bytes", () => {
  it("stage 1 with a linear CD table of 16 CDs, S1DSS=SSID0, cacheable CD fetches", () => {
    const w = encodeSte({
      V: 1,
      Config: 5,
      S1ContextPtr: 0x40_0000,
      S1CDMax: 4,
      S1DSS: 2,
      S1CIR: 1,
      S1COR: 1,
      S1CSH: 3,
    });
    expect(hexOf(w)).toBe(`0b00400000000020d6${"00".repeat(55)}`);
    expect(decodeSte(w)).toMatchObject({
      V: 1n,
      Config: 5n,
      S1ContextPtr: 0x40_0000n,
      S1CDMax: 4n,
      S1DSS: 2n,
      S1CSH: 3n,
    });
  });

  it("nested with the stage-2 VTCR fields and S2TTB", () => {
    const w = encodeSte({
      V: 1,
      Config: 7,
      S1ContextPtr: 0x1000_0000,
      S2VMID: 3,
      S2T0SZ: 16,
      S2SL0: 2,
      S2IR0: 1,
      S2OR0: 1,
      S2SH0: 3,
      S2PS: 5,
      S2AA64: 1,
      S2PTW: 1,
      S2R: 1,
      S2TTB: 0x80_0000,
    });
    expect(hexOf(w)).toBe(
      `0f0000100000000000000000000000000300000090354d040000800000000000${"00".repeat(32)}`,
    );
    const f = decodeSte(w);
    expect(f).toMatchObject({
      S2T0SZ: 16n,
      S2SL0: 2n,
      S2PS: 5n,
      S2AA64: 1n,
      S2R: 1n,
      S2TTB: 0x80_0000n,
      S2VMID: 3n,
    });
  });

  it("L1STD: Span [4:0], L2Ptr [51:6]", () => {
    expect(encodeL1Std(9, 0x12_3400)).toBe(0x12_3409n);
    expect(decodeL1Std(0x12_3409n)).toEqual({ span: 9, l2ptr: 0x12_3400n });
  });

  it("every field round-trips and touches only its own bits", () => {
    for (const [name, w, msb, lsb] of STE_FIELDS) {
      const max = (1n << BigInt(msb - lsb + 1)) - 1n;
      const words = encodeSte({
        [name]: name === "S1ContextPtr" ? max << 6n : name === "S2TTB" ? max << 4n : max,
      });
      expect(words[w]).toBe(max << BigInt(lsb));
      expect(words.filter((x) => x !== 0n)).toHaveLength(1);
    }
  });
});

describe("CD golden bytes", () => {
  it("the CD Linux writes for a 48-bit 4K stage-1 domain", () => {
    const w = encodeCd({
      T0SZ: 16,
      TG0: 0,
      EPD1: 1,
      V: 1,
      IPS: 5,
      AA64: 1,
      R: 1,
      ASID: 7,
      TTB0: 0x50_0000,
      MAIR: 0xf404ff44,
    });
    expect(hexOf(w)).toBe(
      `100000c0052207000000500000000000000000000000000044ff04f400000000${"00".repeat(32)}`,
    );
    expect(decodeCd(w)).toMatchObject({
      T0SZ: 16n,
      EPD1: 1n,
      V: 1n,
      IPS: 5n,
      AA64: 1n,
      R: 1n,
      ASID: 7n,
      TTB0: 0x50_0000n,
    });
  });

  it("L1CD: V [0], L2Ptr [51:12]", () => {
    expect(encodeL1Cd(true, 0x7_0000)).toBe(0x7_0001n);
    expect(decodeL1Cd(0x7_0001n)).toEqual({ valid: true, l2ptr: 0x7_0000n });
  });

  it("fields are disjoint", () => {
    const seen = new Map<number, string>();
    for (const [name, w, msb, lsb] of CD_FIELDS) {
      for (let b = lsb; b <= msb; b++) {
        expect(seen.get(w * 64 + b)).toBeUndefined();
        seen.set(w * 64 + b, name);
      }
    }
  });
});

describe("translation table descriptors", () => {
  it("a 4K page descriptor: valid, page, AP[1], inner-shareable, AF, nG", () => {
    const d = encodeLeafPte(0x1234_5000n, 3, { ap: 1, ng: 1 });
    expect(d).toBe(0x1234_5f43n);
    expect(decodePte(d, 12, 3)).toMatchObject({
      valid: true,
      kind: "page",
      address: 0x1234_5000n,
      attrs: { AP: 1, AF: 1, nG: 1, SH: 3 },
    });
  });

  it("blocks, tables, and reserved encodings by level and granule", () => {
    expect(decodePte(encodeLeafPte(0x4000_0000n, 1), 12, 1).kind).toBe("block");
    expect(decodePte(encodeLeafPte(0x4000_0000n, 1), 14, 1).kind).toBe("reserved");
    expect(decodePte(encodeLeafPte(0n, 0), 12, 0).kind).toBe("reserved");
    expect(decodePte(encodeTablePte(0x5000n, { apTable: 2, uxnTable: 1 }), 12, 0)).toMatchObject({
      kind: "table",
      address: 0x5000n,
      attrs: { APTable: 2, UXNTable: 1 },
    });
    expect(decodePte(encodeLeafPte(0n, 3) & ~2n, 12, 3).kind).toBe("reserved");
  });

  it("64K granule keeps OA[51:48] in bits [15:12] (LPA)", () => {
    const d = encodeLeafPte(0x000a_0000_0001_0000n, 3);
    expect((d >> 12n) & 0xfn).toBe(0xan);
    expect(decodePte(d, 16, 3).address).toBe(0x000a_0000_0001_0000n);
  });

  it("the driver's format encodes exactly what the walker reads", () => {
    const spec = lpaeGeometry(1, 12, 48);
    expect(spec).toEqual({
      name: "arm-lpae-s1-4k",
      stage: 1,
      granuleLg2: 12,
      inputBits: 48,
      startLevel: 0,
      concat: 1,
    });
    const fmt = lpaeFormat(spec);
    const out = new Uint32Array(2);
    fmt.encodeLeaf(0x1234_5000, 0, 1, out); // read-only, no exec
    const d = (BigInt(out[1]!) << 32n) | BigInt(out[0]!);
    expect(d).toBe(0x0060_0000_1234_5fc7n);
    expect(fmt.leafPerm(out[0]!, out[1]!, 0)).toBe(1);
    expect(fmt.entryAddress(out[0]!, out[1]!, 0)).toBe(0x1234_5000);
    expect(lpaeGeometry(2, 14, 48)).toMatchObject({ startLevel: 1, concat: 2 });
    expect(lpaeGeometry(2, 16, 48)).toMatchObject({ startLevel: 1, concat: 1 });
  });
});

describe("commands", () => {
  it("range TLBI_NH_VA golden bytes", () => {
    const [w0, w1] = encodeCommand({
      op: CmdOp.TLBI_NH_VA,
      num: 2,
      scale: 1,
      vmid: 3,
      asid: 7,
      leaf: 1,
      tg: 1,
      addr: 0x7f12_3456_7000n,
    });
    expect(hexOf([w0, w1])).toBe("122010000300070001745634127f0000");
    expect(decodeCommand(w0, w1)).toMatchObject({
      op: 0x12,
      num: 2,
      scale: 1,
      vmid: 3,
      asid: 7,
      leaf: 1,
      tg: 1,
      addr: 0x7f12_3456_7000n,
    });
  });

  it("CFGI_CD carries the SubstreamID in [31:12] and the StreamID in [63:32]", () => {
    const [w0, w1] = encodeCommand({ op: CmdOp.CFGI_CD, ssid: 0xfffff, sid: 0x1234, leaf: 1 });
    expect(w0).toBe(0x0000_1234_ffff_f005n);
    expect(w1).toBe(1n);
    expect(decodeCommand(w0, w1)).toMatchObject({ ssid: 0xfffff, sid: 0x1234 });
  });

  it("CMD_RESUME: RESP [13:12], StreamID [63:32], STAG [79:64]; CMD_STALL_TERM: StreamID (4.7.1, 4.7.2)", () => {
    const [w0, w1] = encodeCommand({ op: CmdOp.RESUME, sid: 0x1234, stag: 0xbeef, resp: ResumeResp.ABORT });
    expect([w0, w1]).toEqual([0x0000_1234_0000_2044n, 0xbeefn]);
    expect(decodeCommand(w0, w1)).toMatchObject({ op: 0x44, sid: 0x1234, stag: 0xbeef, resp: 2 });
    expect(encodeCommand({ op: CmdOp.RESUME, sid: 7, stag: 3, resp: ResumeResp.RETRY })).toEqual([
      0x0000_0007_0000_1044n,
      3n,
    ]);
    expect(encodeCommand({ op: CmdOp.STALL_TERM, sid: 0xffff_ffff, stag: 3 })).toEqual([
      0xffff_ffff_0000_0045n,
      0n,
    ]);
  });

  it("STE.MEV is word 1 bit 19 (STRTAB_STE_1_MEV)", () => {
    expect(encodeSte({ MEV: 1 })[1]).toBe(1n << 19n);
    expect(decodeSte([0n, 1n << 19n, 0n, 0n, 0n, 0n, 0n, 0n]).MEV).toBe(1n);
  });

  it("CFGI_STE_RANGE, CMD_SYNC", () => {
    expect(encodeCommand({ op: CmdOp.CFGI_STE_RANGE, range: 31 })).toEqual([4n, 31n]);
    expect(encodeCommand({ op: CmdOp.CMD_SYNC, cs: 1 })).toEqual([0x1046n, 0n]);
  });

  it("round-trips TLBI fields (property)", () => {
    fc.assert(
      fc.property(
        fc.record({
          num: fc.integer({ min: 0, max: 31 }),
          scale: fc.integer({ min: 0, max: 31 }),
          vmid: fc.integer({ min: 0, max: 0xffff }),
          asid: fc.integer({ min: 0, max: 0xffff }),
          tg: fc.integer({ min: 0, max: 3 }),
          ttl: fc.integer({ min: 0, max: 3 }),
          leaf: fc.integer({ min: 0, max: 1 }),
          addr: fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }).map((a) => a << 12n),
        }),
        (f) => {
          const [w0, w1] = encodeCommand({ op: CmdOp.TLBI_NH_VA, ...f });
          expect(decodeCommand(w0, w1)).toMatchObject(f);
        },
      ),
    );
  });
});

describe("event records", () => {
  it("F_TRANSLATION with S2=1, CLASS=IN and the IPA: golden bytes", () => {
    const w = encodeEvent({
      id: 0x10,
      ssv: 1,
      substreamId: 5,
      streamId: 0x42,
      rnw: 1,
      s2: 1,
      cls: 2,
      inputAddr: 0x7f12_3456_7008n,
      addr: 0x3000_5000n,
    });
    expect(hexOf(w)).toBe("1058000042000000000000008802000008705634127f00000050003000000000");
    expect(decodeEvent(w)).toMatchObject({
      id: 0x10,
      ssv: 1,
      substreamId: 5,
      streamId: 0x42,
      rnw: 1,
      s2: 1,
      cls: 2,
      addr: 0x3000_5000n,
    });
  });

  it("fetch events keep FetchAddr[51:3]; translation events IPA[51:12]", () => {
    expect(encodeEvent({ id: 0x0b, addr: 0x1238n })[3]).toBe(0x1238n);
    expect(encodeEvent({ id: 0x10, addr: 0x1238n })[3]).toBe(0x1000n);
  });

  it("bytes <-> words", () => {
    const b = fromHex("0102030405060708 1112131415161718");
    expect(bytesToWords(b)).toEqual([0x0807060504030201n, 0x1817161514131211n]);
    expect(toHex(wordsToBytes(bytesToWords(b)))).toBe("01020304050607081112131415161718");
  });
});

describe("lpaeFormat.linearLeafAddress (core PageTable writes runs from one template)", () => {
  it("every leaf equals the zero-address leaf with the OA OR-ed in, below 2^48 (property)", () => {
    for (const [stage, g, bits] of [
      [1, 12, 48],
      [1, 14, 47],
      [1, 16, 48],
      [2, 12, 40],
      [2, 16, 42],
    ] as const) {
      for (const dirty of [false, true]) {
        const fmt = lpaeFormat(lpaeGeometry(stage, g, bits), dirty);
        expect(fmt.linearLeafAddress).toBe(true);
        fc.assert(
          fc.property(
            fc.integer({ min: 0, max: 2 ** (48 - g) - 1 }),
            fc.integer({ min: 0, max: 7 }),
            (page, prot) => {
              const oa = page * 2 ** g;
              const t = new Uint32Array(2);
              const e = new Uint32Array(2);
              fmt.encodeLeaf(0, 0, prot, t);
              fmt.encodeLeaf(oa, 0, prot, e);
              expect([e[0], e[1]]).toEqual([(t[0]! | oa) >>> 0, (t[1]! | Math.floor(oa / 2 ** 32)) >>> 0]);
            },
          ),
          { numRuns: 100 },
        );
      }
    }
  });
});

describe("lpaeFormat.pageBits (core PageTable counts dropped pages from it)", () => {
  it("tells a page from an empty entry exactly as entryKind does at level 3 (property)", () => {
    for (const [stage, g, bits] of [
      [1, 12, 48],
      [1, 16, 48],
      [2, 12, 40],
    ] as const) {
      const fmt = lpaeFormat(lpaeGeometry(stage, g, bits), true);
      const { any, all } = fmt.pageBits!;
      fc.assert(
        fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), (lo, hi) => {
          const page = (lo & any) !== 0 && (lo & all) === all;
          expect(page).toBe(fmt.entryKind(lo, hi, 0) === EntryKind.LEAF);
        }),
        { numRuns: 300 },
      );
      // bits[1:0]: 0b11 page, 0b01 reserved (VMSAv8-64 D8.3), 0bx0 invalid.
      expect([0, 1, 2, 3].map((t) => fmt.entryKind(t, 0, 0) === EntryKind.LEAF)).toEqual([
        false,
        false,
        false,
        true,
      ]);
    }
  });
});
