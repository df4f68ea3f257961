/**
 * Golden tests: encode -> exact bytes -> decode for every entry kind, descriptor and
 * fault record. Expected words are derived by hand from the spec's bit positions
 * (comments), then compared as little-endian bytes.
 */

import { EntryKind } from "@iommu-kit/core/driver";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeContextEntry,
  decodeScalableContextEntry,
  encodeContextEntry,
  encodeScalableContextEntry,
} from "../src/format/context-entry.ts";
import { decodeFaultRecord, encodeFaultRecord } from "../src/format/fault-record.ts";
import { decodeFsEntry, encodeFsEntry, fsFormat } from "../src/format/fs-pte.ts";
import type { InvDescriptor } from "../src/format/inv-desc.ts";
import {
  decodeDescriptor,
  decodeDescriptorHalves,
  encodeDescriptor,
  encodeDescriptorHalves,
} from "../src/format/inv-desc.ts";
import {
  decodePasidDirEntry,
  decodePasidEntry,
  encodePasidDirEntry,
  encodePasidEntry,
} from "../src/format/pasid-entry.ts";
import { decodeCap, decodeEcap, encodeCap, encodeEcap } from "../src/format/registers.ts";
import {
  decodeRootEntry,
  decodeScalableRootEntry,
  encodeRootEntry,
  encodeScalableRootEntry,
} from "../src/format/root-entry.ts";
import { decodeSsEntry, encodeSsEntry, ssFormat } from "../src/format/ss-pte.ts";
import { registersFor, resolveConfig } from "../src/hw-info.ts";
import { bytesHex, bytesToWords, wordsToBytes } from "../src/internal/words.ts";

/** Little-endian hex of 64-bit words, written out by hand-independent means. */
function le(...words: bigint[]): string {
  return words.map((w) => w.toString(16).padStart(16, "0").match(/../g)!.reverse().join("")).join("");
}

function bytesOf(words: readonly bigint[]): string {
  return bytesHex(wordsToBytes(words));
}

describe("byte order", () => {
  it("a root entry is little-endian in memory", () => {
    expect(bytesOf(encodeRootEntry({ present: true, ctp: 0x12345000 }))).toBe(
      "01503412000000000000000000000000",
    );
  });
  it("bytesToWords inverts wordsToBytes", () => {
    const w = [0x0123456789abcdefn, 0xfedcba9876543210n];
    expect(bytesToWords(wordsToBytes(w))).toEqual(w);
  });
});

describe("root entries (spec 9.1, 9.2)", () => {
  it("legacy: P 0, CTP 63:12", () => {
    const e = { present: true, ctp: 0x12345000 };
    const words = encodeRootEntry(e);
    expect(bytesOf(words)).toBe(le(0x12345001n, 0n));
    expect(decodeRootEntry(words)).toEqual({ ...e, reserved: false });
  });
  it("legacy: reserved bits 11:1 and 127:64 are reported", () => {
    expect(decodeRootEntry([0x12345003n, 0n]).reserved).toBe(true);
    expect(decodeRootEntry([0x12345001n, 1n]).reserved).toBe(true);
  });
  it("scalable: LP 0 / LCTP 63:12, UP 64 / UCTP 127:76", () => {
    const e = { lowerPresent: true, lowerCtp: 0x1000, upperPresent: true, upperCtp: 0xabc000 };
    const words = encodeScalableRootEntry(e);
    expect(bytesOf(words)).toBe(le(0x1001n, 0xabc001n));
    expect(decodeScalableRootEntry(words)).toEqual({ ...e, reserved: false });
    expect(decodeScalableRootEntry([0x1001n, 0xabc011n]).reserved).toBe(true);
  });
});

describe("context entries (spec 9.3, 9.4)", () => {
  it("legacy: P 0, FPD 1, TT 3:2, SLPTPTR 63:12; AW 66:64, DID 87:72", () => {
    const e = { present: true, fpd: true, tt: 2, slptptr: 0x76543000, aw: 2, did: 0x1234 };
    const words = encodeContextEntry(e);
    expect(bytesOf(words)).toBe(le(0x7654300bn, 0x123402n));
    expect(decodeContextEntry(words)).toEqual({ ...e, reserved: false });
  });
  it("legacy: bits 11:4, 71 and 127:88 are reserved", () => {
    expect(decodeContextEntry([0x7654301bn, 0x123402n]).reserved).toBe(true);
    expect(decodeContextEntry([0x7654300bn, 0x123482n]).reserved).toBe(true);
    expect(decodeContextEntry([0x7654300bn, 0x1000123402n]).reserved).toBe(true);
    // AVAIL 70:67 is ignored.
    expect(decodeContextEntry([0x7654300bn, 0x12347an]).reserved).toBe(false);
  });
  it("scalable: P, DTE, PASIDE, PDTS 11:9, PASIDDIRPTR; RID_PASID 83:64, RID_PRIV 84", () => {
    const e = {
      present: true,
      fpd: false,
      dte: true,
      paside: true,
      pre: false,
      pdts: 7,
      pasidDirPtr: 0x5_0000_0000,
      ridPasid: 0xabcde,
      ridPriv: true,
    };
    const words = encodeScalableContextEntry(e);
    expect(bytesOf(words)).toBe(le(0x5_0000_0e0dn, 0x1abcden, 0n, 0n));
    expect(decodeScalableContextEntry(words)).toEqual({ ...e, reserved: false });
    expect(decodeScalableContextEntry([0x5_0000_0e2dn, 0x1abcden, 0n, 0n]).reserved).toBe(true);
    expect(decodeScalableContextEntry([0x5_0000_0e0dn, 0x1abcden, 0n, 1n]).reserved).toBe(true);
  });
});

describe("PASID structures (spec 9.5, 9.6)", () => {
  it("directory entry: P 0, FPD 1, SMPTBLPTR 63:12", () => {
    const e = { present: true, fpd: true, tablePtr: 0x9000 };
    expect(bytesOf([encodePasidDirEntry(e)])).toBe(le(0x9003n));
    expect(decodePasidDirEntry(0x9003n)).toEqual({ ...e, reserved: false });
    expect(decodePasidDirEntry(0x9007n).reserved).toBe(true);
  });
  it("table entry: every field at its bit", () => {
    const e = {
      present: true,
      fpd: true,
      aw: 2,
      ssee: true,
      pgtt: 3,
      ssade: true,
      ssptptr: 0x1_2345_6000,
      did: 0xbeef,
      pwsnp: true,
      pgsnp: true,
      sre: true,
      fspm: 1,
      wpe: true,
      eafe: true,
      fsptptr: 0x7000,
    };
    const words = encodePasidEntry(e);
    // w0: P|FPD|AW<<2|SSEE<<5|PGTT<<6|SSADE<<9|SSPTPTR; w1: DID|PWSNP<<23|PGSNP<<24; w2: SRE|FSPM<<2|WPE<<4|EAFE<<7|FSPTPTR.
    expect(bytesOf(words)).toBe(le(0x1_2345_62ebn, 0x180beefn, 0x7095n, 0n, 0n, 0n, 0n, 0n));
    expect(decodePasidEntry(words)).toEqual({ ...e, reserved: false });
  });
  it("table entry: reserved bits", () => {
    const base = encodePasidEntry({
      present: true,
      fpd: false,
      aw: 2,
      ssee: false,
      pgtt: 2,
      ssade: false,
      ssptptr: 0x1000,
      did: 1,
      pwsnp: false,
      pgsnp: false,
      sre: false,
      fspm: 0,
      wpe: false,
      eafe: false,
      fsptptr: 0,
    });
    expect(decodePasidEntry(base).reserved).toBe(false);
    for (const [word, bit] of [
      [0, 10n],
      [1, 16n],
      [2, 8n],
      [2, 11n],
      [3, 0n],
      [7, 63n],
    ] as const) {
      const w = [...base];
      w[word] = w[word]! | (1n << bit);
      expect(decodePasidEntry(w).reserved, `word ${word} bit ${bit}`).toBe(true);
    }
    // ERE (129), NXE (133), SMEP (134): Execute-Requested support, removed from the spec;
    // ignored, as Linux 6.1 sets NXE in every first-stage entry (pasid_set_nxe).
    for (const bit of [1n, 5n, 6n]) {
      const w = [...base];
      w[2] = w[2]! | (1n << bit);
      expect(decodePasidEntry(w).reserved, `word 2 bit ${bit}`).toBe(false);
    }
  });
});

describe("paging entries (spec 9.7, 9.8)", () => {
  it("second stage: R 0, W 1, X 2, PS 7, A 8, D 9, SNP 11, ADDR 51:12", () => {
    const e = { r: true, w: true, x: true, ps: true, a: true, d: true, snp: true, addr: 0x3_4000_0000 };
    const v = encodeSsEntry(e);
    expect(bytesOf([v])).toBe(le(0x3_4000_0b87n));
    expect(decodeSsEntry(v)).toEqual(e);
  });
  it("first stage: P..G 8:0, EA 10, ADDR 51:12, XD 63", () => {
    const e = {
      p: true,
      rw: true,
      us: true,
      pwt: true,
      pcd: true,
      a: true,
      d: true,
      ps: true,
      g: true,
      ea: true,
      addr: 0x20_0000,
      xd: true,
    };
    const v = encodeFsEntry(e);
    expect(bytesOf([v])).toBe(le(0x8000_0000_0020_05ffn));
    expect(decodeFsEntry(v)).toEqual(e);
  });
});

describe("invalidation descriptors (spec 6.5.2)", () => {
  const golden: Array<[InvDescriptor, bigint, bigint]> = [
    [{ type: "context-cache", g: 3, did: 0x42, sid: 0x0108, fm: 2 }, 0x0002_0108_0042_0031n, 0n],
    [
      { type: "iotlb", g: 3, dr: true, dw: true, did: 7, addr: 0x1234_5000, ih: true, am: 3 },
      0x0007_00f2n,
      0x1234_5043n,
    ],
    [
      { type: "dev-tlb", sid: 0x0381, pfsid: 0x0381, qdep: 0, s: true, addr: 0x7fff_ffff_ffff_f000 },
      0x0380_0381_0000_1003n,
      0x7fff_ffff_ffff_f001n,
    ],
    [{ type: "iec", g: true, im: 5, iidx: 0x99 }, 0x0000_0099_2800_0014n, 0n],
    [
      { type: "wait", ifl: true, sw: true, fn: true, pd: false, statusData: 0xcafebabe, statusAddr: 0x1000 },
      0xcafe_babe_0000_0075n,
      0x1000n,
    ],
    [
      { type: "pasid-iotlb", g: 3, did: 9, pasid: 0xfffff, addr: 0x40_0000, ih: false, am: 9 },
      0x000f_ffff_0009_0036n,
      0x40_0009n,
    ],
    [{ type: "pasid-cache", g: 1, did: 3, pasid: 7 }, 0x0000_0007_0003_0017n, 0n],
    [
      { type: "pasid-dev-tlb", sid: 0x10, pasid: 5, pfsid: 0, qdep: 4, global: true, s: true, addr: 0x2000 },
      0x0000_0005_0010_0048n,
      0x2801n,
    ],
  ];
  for (const [d, lo, hi] of golden) {
    it(`${d.type}: exact bytes and back`, () => {
      const words = encodeDescriptor(d);
      expect(bytesOf(words)).toBe(le(lo, hi));
      expect(decodeDescriptor(words)).toEqual({ desc: d, error: null });
      expect(decodeDescriptor([...words, 0n, 0n])).toEqual({ desc: d, error: null });
      // The driver half's 32-bit path: the same bytes, and back.
      const halves = new Uint32Array(8);
      encodeDescriptorHalves(d, halves);
      expect(bytesOf([halvesWord(halves, 0), halvesWord(halves, 2)])).toBe(le(lo, hi));
      expect(decodeDescriptorHalves(halves, 4)).toEqual({ desc: d, error: null });
      expect(decodeDescriptorHalves(halves, 8)).toEqual({ desc: d, error: null });
    });
  }
  it("unknown types, reserved bits, reserved granularities and a non-zero upper half are errors", () => {
    expect(decodeDescriptor([0xan, 0n]).error).toBe("type"); // page stream response: gone since rev 3
    expect(decodeDescriptor([0x209n, 0n]).error).toBe("type"); // type[6:4] (bits 11:9) = 1 over 9h
    expect(decodeDescriptor([0x0n, 0n]).error).toBe("type");
    expect(decodeDescriptor([0x1n | (1n << 50n) | 0x10n, 0n]).error).toBe("reserved");
    expect(decodeDescriptor([0x1n, 0n]).error).toBe("reserved"); // CC with G = 0
    expect(decodeDescriptor([0x6n | 0x10n, 0n]).error).toBe("reserved"); // P_IOTLB with G = 1
    expect(decodeDescriptor([0x7n | 0x20n, 0n]).error).toBe("reserved"); // PC with G = 2
    expect(decodeDescriptor([0x2n | 0x10n, 0n, 0n, 1n]).error).toBe("reserved");
    expect(decodeDescriptor([0x5n, 1n]).error).toBe("reserved"); // wait: status address bits 1:0
  });
});

/** The 64-bit word held as 32-bit halves at h[i], h[i + 1]. */
function halvesWord(h: Uint32Array, i: number): bigint {
  return (BigInt(h[i + 1]!) << 32n) | BigInt(h[i]!);
}

describe("fault record (FRCD_REG, spec 11.4.11)", () => {
  it("every field at its bit; Linux's dword-3 decode agrees", () => {
    const r = {
      fi: 0x1234_5000,
      sid: 0x0108,
      t2: false,
      priv: true,
      exe: true,
      pp: true,
      fr: 0x85,
      pv: 0xabcde,
      at: 0,
      t1: true,
      f: true,
    };
    const words = encodeFaultRecord(r);
    expect(bytesOf(words)).toBe(le(0x1234_5000n, 0xcabc_de85_e000_0108n));
    expect(decodeFaultRecord(words)).toEqual(r);
    // Linux dmar_fault reads the dword at +12: FR 7:0, PV 27:8 (20 bits), type 30, F 31.
    const d3 = Number(words[1] >> 32n);
    expect(d3 & 0xff).toBe(0x85);
    expect((d3 >>> 8) & 0xfffff).toBe(0xabcde);
    expect((d3 >>> 30) & 1).toBe(1);
    expect(d3 >>> 31).toBe(1);
  });
});

describe("CAP_REG / ECAP_REG (spec 11.4.2, 11.4.3)", () => {
  it("the default unit's registers, bit by bit", () => {
    const { cap, ecap } = registersFor(resolveConfig({}));
    // ND 6 | SAGAW 0b1100 <<8 | MGAW 56 <<16 | ZLR | FRO 0x22 <<24; SLLPS 3 <<34 | PSI | NFR 7 <<40 |
    // MAMV 18 <<48 | DWD DRD | FS1GP | FS5LP.
    expect(cap).toBe(0x11d2_078c_2278_0c06n);
    // C QI DT PT SC | IRO 0xF <<8 | MHMV | NEST | PRS | ERS SRS; EAFS | PSS 19 <<35 | PASID | SMTS | SSADS SSTS FSTS |
    // SMPWCS | RPS.
    expect(ecap).toBe(0x0003_e99c_e4f0_0fc7n);
    const c = decodeCap(cap);
    expect(c).toMatchObject({
      nd: 6,
      sagaw: 12,
      mgaw: 57,
      fro: 0x220,
      sllps: 3,
      nfr: 8,
      mamv: 18,
      fs5lp: true,
    });
    const e = decodeEcap(ecap);
    expect(e).toMatchObject({
      iro: 0xf0,
      pss: 19,
      pasid: true,
      smts: true,
      fsts: true,
      ssts: true,
      nest: true,
      prs: true,
    });
    expect(encodeCap(c)).toBe(cap);
    expect(encodeEcap(e)).toBe(ecap);
  });
  it("legacy mode clears the scalable-mode capabilities", () => {
    const e = decodeEcap(registersFor(resolveConfig({ mode: "legacy" })).ecap);
    expect(e).toMatchObject({
      smts: false,
      pasid: false,
      fsts: false,
      nest: false,
      prs: false,
      pt: true,
      qi: true,
    });
  });
});

describe("codec round trips (property)", () => {
  const addr = fc.integer({ min: 0, max: 2 ** 40 - 1 }).map((n) => n * 4096);
  it("PASID entries", () => {
    fc.assert(
      fc.property(
        fc.record({
          present: fc.boolean(),
          fpd: fc.boolean(),
          aw: fc.integer({ min: 0, max: 7 }),
          ssee: fc.boolean(),
          pgtt: fc.integer({ min: 0, max: 7 }),
          ssade: fc.boolean(),
          ssptptr: addr,
          did: fc.integer({ min: 0, max: 0xffff }),
          pwsnp: fc.boolean(),
          pgsnp: fc.boolean(),
          sre: fc.boolean(),
          fspm: fc.integer({ min: 0, max: 3 }),
          wpe: fc.boolean(),
          eafe: fc.boolean(),
          fsptptr: addr,
        }),
        (e) => {
          expect(decodePasidEntry(encodePasidEntry(e))).toEqual({ ...e, reserved: false });
        },
      ),
    );
  });
  it("fault records", () => {
    fc.assert(
      fc.property(
        fc.record({
          fi: addr,
          sid: fc.integer({ min: 0, max: 0xffff }),
          t2: fc.boolean(),
          priv: fc.boolean(),
          exe: fc.boolean(),
          pp: fc.boolean(),
          fr: fc.integer({ min: 0, max: 0xff }),
          pv: fc.integer({ min: 0, max: 0xfffff }),
          at: fc.integer({ min: 0, max: 3 }),
          t1: fc.boolean(),
          f: fc.boolean(),
        }),
        (r) => {
          expect(decodeFaultRecord(encodeFaultRecord(r))).toEqual(r);
        },
      ),
    );
  });
  it("descriptors decode without throwing whatever the bytes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 2, maxLength: 4 }),
        (w) => {
          const r = decodeDescriptor(w);
          expect(r.desc === null).toBe(r.error !== null);
          if (r.desc !== null) expect(decodeDescriptor(encodeDescriptor(r.desc)).desc).toEqual(r.desc);
        },
      ),
    );
  });
  it("the 32-bit descriptor codec equals the 64-bit one whatever the bytes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 4, maxLength: 4 }),
        fc.boolean(),
        (w, wide) => {
          const words = wide ? w : w.slice(0, 2);
          const halves = new Uint32Array(8);
          for (let i = 0; i < words.length; i++) {
            halves[2 * i] = Number(words[i]! & 0xffffffffn);
            halves[2 * i + 1] = Number(words[i]! >> 32n);
          }
          const r = decodeDescriptorHalves(halves, words.length * 2);
          expect(r).toEqual(decodeDescriptor(words));
          if (r.desc !== null) {
            const out = new Uint32Array(4);
            encodeDescriptorHalves(r.desc, out);
            expect([halvesWord(out, 0), halvesWord(out, 2)]).toEqual(encodeDescriptor(r.desc));
          }
        },
      ),
    );
  });
});

describe("ssFormat / fsFormat linearLeafAddress (core PageTable writes runs from one template)", () => {
  it("every leaf equals the zero-address leaf with the address OR-ed in, below 2^48 (property)", () => {
    for (const fmt of [ssFormat(4, 2), ssFormat(5, 2), fsFormat(4, 2), fsFormat(5, 2)]) {
      expect(fmt.linearLeafAddress).toBe(true);
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 2 ** 36 - 1 }),
          fc.integer({ min: 0, max: 7 }),
          (page, prot) => {
            const oa = page * 4096;
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
  });
});

describe("ssFormat / fsFormat pageBits (core PageTable counts dropped pages from it)", () => {
  it("tells a page from an empty entry exactly as entryKind does at level 1 (property)", () => {
    for (const fmt of [ssFormat(4, 2), ssFormat(5, 2), fsFormat(4, 2), fsFormat(5, 2)]) {
      const { any, all } = fmt.pageBits!;
      fc.assert(
        fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), (lo, hi) => {
          const page = (lo & any) !== 0 && (lo & all) === all;
          expect(page).toBe(fmt.entryKind(lo, hi, 0) === EntryKind.LEAF);
        }),
        { numRuns: 300 },
      );
    }
    // Second stage: R (bit 0) or W (bit 1) makes a PTE present; first stage: P (bit 0).
    expect([0, 1, 2, 3].map((t) => ssFormat(4, 2).entryKind(t, 0, 0) === EntryKind.LEAF)).toEqual([
      false,
      true,
      true,
      true,
    ]);
    expect([0, 1, 2, 3].map((t) => fsFormat(4, 2).entryKind(t, 0, 0) === EntryKind.LEAF)).toEqual([
      false,
      true,
      false,
      true,
    ]);
  });
});
