import { Access, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { EventId, registersFor } from "../src/index.ts";

const IDR0 = registersFor().IDR0!;

import { chain4k, encodeLeafPte, encodeTablePte, recordBytes, rig, s1Cd, s1Ste, s2Fields } from "./rig.ts";

const CD = 0x40_0000;
const PT = 0x50_0000;
const PA = 0x1234_5000;
const IOVA = 0x7f12_3456_7000;
const R = Access.READ;
const W = Access.WRITE;

/** A rig with StreamID 1 stage 1 through one CD and a 4-level 4K chain mapping IOVA -> PA (rw, EL0). */
function s1Rig(
  leaf: bigint = encodeLeafPte(BigInt(PA), 3, { ap: 1, ng: 1 }),
  cd: Record<string, bigint | number> = {},
) {
  const r = rig();
  r.ste(1, s1Ste(CD));
  r.cd(CD, s1Cd(PT, cd));
  const entries = chain4k(r, PT, IOVA, leaf);
  return { r, entries };
}

describe("stage 1, 4K granule, 4 levels", () => {
  it("translates to the exact address with the leaf's permissions", () => {
    const { r } = s1Rig();
    const t = r.x(1, -1, IOVA + 0x123, W);
    expect(t).toEqual({ ok: true, pa: PA + 0x123, perm: Perm.R | Perm.W | Perm.X, sizeLg2: 12 });
  });

  it("uses a 2M block at level 2 and a 1G block at level 1", () => {
    const r = rig();
    r.ste(1, s1Ste(CD));
    r.cd(CD, s1Cd(PT));
    r.pte(PT, encodeTablePte(BigInt(PT + 0x1000)));
    r.pte(PT + 0x1000 + 1 * 8, encodeLeafPte(0x4000_0000n * 3n, 1, { ap: 1 }));
    r.pte(PT + 0x1000 + 2 * 8, encodeTablePte(BigInt(PT + 0x2000)));
    r.pte(PT + 0x2000 + 5 * 8, encodeLeafPte(0x60_0000n, 2, { ap: 1 }));
    expect(r.x(1, -1, 0x4000_0000 + 0x12_3456, R)).toMatchObject({ ok: true, pa: 0xc012_3456, sizeLg2: 30 });
    expect(r.x(1, -1, 0x8000_0000 + 5 * 0x20_0000 + 0x1_2345, R)).toMatchObject({
      ok: true,
      pa: 0x61_2345,
      sizeLg2: 21,
    });
  });

  it("F_TRANSLATION for an invalid leaf, recorded because CD.R=1, with the exact record", () => {
    const { r, entries } = s1Rig();
    r.pte(entries[3]!, 0n);
    const f = r.fault(1, -1, IOVA + 8, R);
    expect(f.class).toBe("translation");
    expect(f.recorded).toBe(true);
    expect(f.vendor.code).toBe(0x10);
    const rec = { id: EventId.F_TRANSLATION, streamId: 1, rnw: 1, cls: 2, inputAddr: BigInt(IOVA + 8) };
    expect(f.vendor.raw).toEqual(recordBytes(rec));
    expect(r.events()).toEqual([
      expect.objectContaining({ id: 0x10, streamId: 1, rnw: 1, s2: 0, cls: 2, inputAddr: BigInt(IOVA + 8) }),
    ]);
  });

  it("CD.R=0 suppresses translation-class records but still faults", () => {
    const { r, entries } = s1Rig(undefined, { R: 0 });
    r.pte(entries[3]!, 0n);
    const f = r.fault(1, -1, IOVA, R);
    expect(f.recorded).toBe(false);
    expect(r.events()).toEqual([]);
  });

  it("F_TRANSLATION for a reserved level-3 descriptor (0b01) and a block at level 0", () => {
    const { r, entries } = s1Rig();
    r.pte(entries[3]!, encodeLeafPte(BigInt(PA), 3) & ~2n);
    expect(r.fault(1, -1, IOVA, R).vendor.name).toBe("F_TRANSLATION");
    r.pte(entries[0]!, encodeLeafPte(0n, 1));
    r.b.flushCaches();
    expect(r.fault(1, -1, IOVA, R).vendor.name).toBe("F_TRANSLATION");
  });

  it("F_TRANSLATION in the gap above TTB0's range and with EPD0", () => {
    const { r } = s1Rig(undefined, { T0SZ: 25 });
    expect(r.fault(1, -1, 2 ** 39, R).vendor.name).toBe("F_TRANSLATION");
    const r2 = s1Rig(undefined, { EPD0: 1, EPD1: 1 }).r;
    expect(r2.fault(1, -1, IOVA, R).vendor.name).toBe("F_TRANSLATION");
  });

  it("F_ADDR_SIZE when the output address is beyond CD.IPS, with the exact record", () => {
    const { r } = s1Rig(encodeLeafPte(0x100_0000_0000n, 3, { ap: 1 }), { IPS: 2 });
    const f = r.fault(1, -1, IOVA, W | Access.PRIV);
    expect(f.class).toBe("address-size");
    expect(f.vendor.raw).toEqual(
      recordBytes({ id: 0x11, streamId: 1, rnw: 0, pnu: 1, cls: 2, inputAddr: BigInt(IOVA) }),
    );
  });

  it("F_ACCESS with the exact record (an instruction fetch)", () => {
    const { r } = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 1, af: 0 }));
    const f = r.fault(1, -1, IOVA + 4, R | Access.EXEC);
    expect(f.class).toBe("access-flag");
    expect(f.vendor.raw).toEqual(
      recordBytes({ id: 0x12, streamId: 1, rnw: 1, ind: 1, cls: 2, inputAddr: BigInt(IOVA + 4) }),
    );
  });

  it("an event queue outside RAM raises GERROR.EVTQ_ABT_ERR and records nothing", () => {
    const r = rig({}, { EVENTQ_BASE: 0x8000_0000_0000n | 3n });
    expect(r.fault(0x100, -1, 0, R).recorded).toBe(false);
    expect(r.b.hw.readRegister("GERROR") & 4n).toBe(4n);
  });

  it("F_ACCESS for AF=0 unless AFFD=1; HA sets AF in memory", () => {
    const leaf = encodeLeafPte(BigInt(PA), 3, { ap: 1, af: 0 });
    expect(s1Rig(leaf).r.fault(1, -1, IOVA, R).vendor.name).toBe("F_ACCESS");
    expect(s1Rig(leaf, { AFFD: 1 }).r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
    const { r, entries } = s1Rig(leaf, { HA: 1 });
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
    expect(r.memory.read64(entries[3]!) & (1n << 10n)).toBe(1n << 10n);
  });

  it("F_PERMISSION: write to AP[2]=1, unprivileged access to AP[1]=0, exec of XN, APTable", () => {
    const ro = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 3 })).r;
    expect(ro.x(1, -1, IOVA, R)).toMatchObject({ ok: true, perm: Perm.R | Perm.X });
    const f = ro.fault(1, -1, IOVA, W);
    expect(f.vendor.raw).toEqual(
      recordBytes({ id: 0x13, streamId: 1, rnw: 0, cls: 2, inputAddr: BigInt(IOVA) }),
    );
    const priv = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 0 })).r;
    expect(priv.fault(1, -1, IOVA, R).vendor.name).toBe("F_PERMISSION");
    expect(priv.x(1, -1, IOVA, R | Access.PRIV)).toMatchObject({ ok: true, perm: Perm.R | Perm.W | Perm.X });
    const xn = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 1, xn: 1 })).r;
    expect(xn.fault(1, -1, IOVA, R | Access.EXEC).vendor.fields.InD).toBe(1);
    // EL0-writable memory is PXN for privileged fetches (VMSAv8-64).
    const el0w = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 1 })).r;
    expect(el0w.fault(1, -1, IOVA, R | Access.EXEC | Access.PRIV).vendor.fields.PnU).toBe(1);
    const { r, entries } = s1Rig();
    r.pte(entries[0]!, encodeTablePte(BigInt(0x50_1000), { apTable: 2 }));
    expect(r.fault(1, -1, IOVA, W).vendor.name).toBe("F_PERMISSION");
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, perm: Perm.R | Perm.X });
  });

  it("CD.HAD0 ignores APTable", () => {
    const { r, entries } = s1Rig(undefined, { HAD0: 1 });
    r.pte(entries[0]!, encodeTablePte(BigInt(0x50_1000), { apTable: 3 }));
    expect(r.x(1, -1, IOVA, W)).toMatchObject({ ok: true, pa: PA });
  });

  it("HD with DBM turns a writable-clean page dirty on the first write", () => {
    const { r, entries } = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 3, dbm: 1 }), { HA: 1, HD: 1 });
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, perm: Perm.R | Perm.X });
    expect(r.x(1, -1, IOVA, W)).toMatchObject({ ok: true, pa: PA, perm: Perm.R | Perm.W | Perm.X });
    expect((r.memory.read64(entries[3]!) >> 6n) & 3n).toBe(1n);
  });

  it("F_WALK_EABT with the fetch address when a table is outside RAM", () => {
    const { r, entries } = s1Rig();
    r.pte(entries[1]!, encodeTablePte(0x8000_0000_0000n));
    const f = r.fault(1, -1, IOVA, R);
    const fetch = 0x8000_0000_0000 + (Math.floor(IOVA / 2 ** 21) % 512) * 8;
    expect(f.vendor.name).toBe("F_WALK_EABT");
    expect(f.class).toBe("walk-abort");
    expect(f.vendor.fields.FetchAddr).toBe(`0x${fetch.toString(16)}`);
    expect(f.vendor.raw).toEqual(
      recordBytes({ id: 0x0b, streamId: 1, rnw: 1, cls: 1, inputAddr: BigInt(IOVA), addr: BigInt(fetch) }),
    );
  });

  it("selects TTB1 for upper-range addresses (translateBig) and faults in the gap", () => {
    const r = rig();
    r.ste(1, s1Ste(CD));
    r.cd(CD, s1Cd(PT, { EPD1: 0, T1SZ: 16, TG1: 2, TTB1: 0x60_0000 }));
    const va = 0xffff_8000_0000_0000n + 0x1000n;
    chain4k(r, 0x60_0000, 0x8000_0000_0000 + 0x1000, encodeLeafPte(0x7000n, 3, { ap: 1 }));
    expect(r.x(1, -1, va + 4n, R)).toMatchObject({ ok: true, pa: 0x7004 });
    expect(r.fault(1, -1, 0x0001_0000_0000_0000n, R).vendor.name).toBe("F_TRANSLATION");
  });

  it("reports the contiguous region size of the leaf (16K and 64K granules)", () => {
    const r = rig();
    r.ste(1, s1Ste(CD));
    r.cd(CD, s1Cd(PT, { TG0: 2, T0SZ: 17 })); // 16K, 47-bit VA: L1..L3
    // L1 index bits [46:36], L2 [35:25], L3 [24:14]
    r.pte(PT, encodeTablePte(0x51_0000n));
    r.pte(0x51_0000, encodeTablePte(0x52_0000n));
    r.pte(0x52_0000 + 8, encodeLeafPte(0x8_0000n, 3, { ap: 1 }));
    expect(r.x(1, -1, 0x4000 + 0x123, R)).toEqual({
      ok: true,
      pa: 0x8_0123,
      perm: Perm.R | Perm.W | Perm.X,
      sizeLg2: 14,
    });
    const r64 = rig({ oas: 52 });
    r64.ste(1, s1Ste(CD));
    r64.cd(CD, s1Cd(0x70_0000, { TG0: 1, T0SZ: 22, IPS: 6 })); // 64K, 42-bit VA: L2..L3
    // L2 index [41:29], L3 [28:16]; LPA: OA[51:48] in descriptor bits [15:12]
    r64.pte(0x70_0000, encodeTablePte(0x80_0000n));
    r64.pte(0x80_0000 + 8, encodeLeafPte(0x000a_0000_0001_0000n, 3, { ap: 1 }));
    expect(r64.x(1, -1, 0x1_0000 + 0x42, R)).toEqual({
      ok: true,
      pa: 0xa_0000_0001_0042,
      perm: 7,
      sizeLg2: 16,
    });
  });
});

describe("stream table and STE", () => {
  it("C_BAD_STREAMID beyond LOG2SIZE, recorded only with CR2.RECINVSID", () => {
    const r = rig();
    const f = r.fault(0x100, -1, 0, R);
    expect(f.vendor.raw).toEqual(recordBytes({ id: 0x02, streamId: 0x100 }));
    expect(f.recorded).toBe(true);
    const quiet = rig({}, { CR2: 0n });
    expect(quiet.fault(0x100, -1, 0, R).recorded).toBe(false);
    expect(quiet.events()).toEqual([]);
  });

  it("F_STE_FETCH when the stream table is outside RAM", () => {
    const r = rig({}, { STRTAB_BASE: 0x8000_0000_0000n });
    const f = r.fault(3, -1, 0, R);
    expect(f.vendor.raw).toEqual(recordBytes({ id: 0x03, streamId: 3, addr: 0x8000_0000_00c0n }));
  });

  it("2-level: L1STD Span bounds the L2 array (beyond Span: C_BAD_STREAMID, spec not QEMU)", () => {
    // FMT=2-level, SPLIT=6, LOG2SIZE=8: L1 index = sid >> 6.
    const r = rig({}, { STRTAB_BASE_CFG: (1n << 16n) | (6n << 6n) | 8n });
    r.memory.write64(0x10_0000 + 8, 0x90_0000n | 3n); // L1[1]: Span 3 = 4 STEs
    r.memory.write64(0x90_0000 + 2 * 64, 9n); // sid 66: bypass
    expect(r.x(66, -1, 0x1234, R)).toMatchObject({ ok: true, pa: 0x1234 });
    expect(r.fault(64 + 4, -1, 0, R).vendor.name).toBe("C_BAD_STREAMID");
    expect(r.fault(3, -1, 0, R).vendor.name).toBe("C_BAD_STREAMID"); // L1[0] Span 0
    r.memory.write64(0x10_0000 + 8, 0x90_0000n | 12n); // Span 12..31 behave as 0
    r.b.flushCaches();
    expect(r.fault(66, -1, 0, R).vendor.name).toBe("C_BAD_STREAMID");
  });

  it("abort STE terminates silently; bypass passes the address through", () => {
    const r = rig();
    r.ste(2, { V: 1, Config: 0 });
    const f = r.fault(2, -1, 0x1000, R);
    expect(f).toMatchObject({ class: "blocked", recorded: false, vendor: { code: null, name: "STE_ABORT" } });
    r.ste(3, { V: 1, Config: 4 });
    expect(r.x(3, -1, 0xabc_d123, W)).toMatchObject({ ok: true, pa: 0xabc_d123 });
  });

  const badSte: [string, Record<string, bigint | number>][] = [
    ["V=0", { V: 0, Config: 4 }],
    ["2-level CD table without CD2L", s1Ste(CD, { S1Fmt: 1, S1CDMax: 2 })],
    ["S1CDMax > SSIDSIZE", s1Ste(CD, { S1CDMax: 21 })],
    ["STRW=0b01 (with Hyp)", s1Ste(CD, { STRW: 1 })],
    ["S1STALLD=1 without a configurable stall model", s1Ste(CD, { S1STALLD: 1 })],
    ["EATS=Full ATS with S2S=1 (with ATS)", { V: 1, Config: 6, EATS: 1, ...s2Fields(PT, { S2S: 1 }) }],
    ["EATS=split-stage on stage 2 only (with ATS)", { V: 1, Config: 6, EATS: 2, ...s2Fields(PT) }],
    ["S1ContextPtr beyond OAS", s1Ste(2 ** 48)],
    ["S2AA64=0", { V: 1, Config: 6, ...s2Fields(PT, { S2AA64: 0 }) }],
    ["S2ENDI=1", { V: 1, Config: 6, ...s2Fields(PT, { S2ENDI: 1 }) }],
    ["S2TG=0b11", { V: 1, Config: 6, ...s2Fields(PT, { S2TG: 3 }) }],
    ["S2HA=1 without HTTU", { V: 1, Config: 6, ...s2Fields(PT, { S2HA: 1 }) }],
    ["S2HD=1 without dirty-state HTTU", { V: 1, Config: 6, ...s2Fields(PT, { S2HA: 1, S2HD: 1 }) }],
    ["S2T0SZ=15", { V: 1, Config: 6, ...s2Fields(PT, { S2T0SZ: 15 }) }],
    ["S2T0SZ=40", { V: 1, Config: 6, ...s2Fields(PT, { S2T0SZ: 40, S2SL0: 0 }) }],
    ["S2SL0=3 with 4K", { V: 1, Config: 6, ...s2Fields(PT, { S2SL0: 3 }) }],
    ["S2SL0 inconsistent with S2T0SZ", { V: 1, Config: 6, ...s2Fields(PT, { S2SL0: 0 }) }],
    ["S2S=1 without stalls", { V: 1, Config: 6, ...s2Fields(PT, { S2S: 1 }) }],
    ["S2TTB beyond S2PS", { V: 1, Config: 6, ...s2Fields(2 ** 40, { S2PS: 2, S2T0SZ: 24, S2SL0: 1 }) }],
  ];
  for (const [why, fields] of badSte) {
    it(`C_BAD_STE: ${why}`, () => {
      const idr0 = why.includes("CD2L")
        ? IDR0 & ~(1n << 19n)
        : why.includes("dirty-state")
          ? (IDR0 & ~(3n << 6n)) | (1n << 6n)
          : why.includes("HTTU")
            ? IDR0 & ~(3n << 6n)
            : why.includes("with Hyp")
              ? IDR0 | (1n << 9n)
              : why.includes("with ATS")
                ? IDR0 | (1n << 10n)
                : IDR0;
      const r = rig({}, { IDR0: idr0 });
      r.ste(5, fields);
      const f = r.fault(5, -1, 0x1000, W);
      expect(f.class).toBe("bad-config");
      expect(f.recorded).toBe(true);
      expect(f.vendor.raw).toEqual(recordBytes({ id: 0x04, streamId: 5 }));
    });
  }

  it("C_BAD_STE for a stage the SMMU does not implement; RES0/IGNORED fields are not checked", () => {
    const r = rig({ stages: "s1" });
    r.ste(5, { V: 1, Config: 6, ...s2Fields(PT) });
    expect(r.fault(5, -1, 0, R).vendor.name).toBe("C_BAD_STE");
    // A configurable stall model accepts S1STALLD; without Hyp STRW is RES0; without ATS EATS is IGNORED.
    const ok = rig({}, { IDR0: IDR0 & ~(3n << 24n) });
    ok.ste(5, s1Ste(CD, { S1STALLD: 1, STRW: 1, EATS: 3 }));
    ok.cd(CD, s1Cd(PT));
    expect(ok.fault(5, -1, 0, R).vendor.name).toBe("F_TRANSLATION");
  });

  it("GBPA: SMMUEN=0 bypasses, or aborts with GBPA.ABORT", () => {
    const r = rig({}, { CR0: 0n });
    expect(r.x(9, -1, 0x5000, R)).toMatchObject({ ok: true, pa: 0x5000 });
    r.b.hw.writeRegister("GBPA", 0x8010_0000n);
    expect(r.b.hw.readRegister("GBPA")).toBe(0x10_0000n);
    expect(r.fault(9, -1, 0x5000, R)).toMatchObject({
      class: "blocked",
      vendor: { name: "GBPA_ABORT", code: null },
    });
  });
});

describe("CD tables and SubstreamIDs", () => {
  function ssidRig(fmt: number, cdMax: number, dss = 2) {
    const r = rig();
    r.ste(1, s1Ste(CD, { S1CDMax: cdMax, S1Fmt: fmt, S1DSS: dss }));
    return r;
  }

  it("linear CD table: SSID n uses CD[n]; non-SSID DMA uses CD[0] with S1DSS=SSID0", () => {
    const r = ssidRig(0, 4);
    chain4k(r, PT, IOVA, encodeLeafPte(0x1000n, 3, { ap: 1 }));
    chain4k(r, 0x60_0000, IOVA, encodeLeafPte(0x2000n, 3, { ap: 1 }));
    r.cd(CD, s1Cd(PT));
    r.cd(CD + 5 * 64, s1Cd(0x60_0000, { ASID: 9 }));
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: 0x1000 });
    expect(r.x(1, 5, IOVA, R)).toMatchObject({ ok: true, pa: 0x2000 });
  });

  it("2-level CD tables (4K and 64K leaves)", () => {
    for (const [fmt, split] of [
      [1, 6],
      [2, 10],
    ] as const) {
      const r = ssidRig(fmt, 12);
      const ssid = 3 * 2 ** split + 7;
      r.memory.write64(CD + 3 * 8, 0x70_0000n | 1n);
      r.cd(0x70_0000 + 7 * 64, s1Cd(PT));
      chain4k(r, PT, IOVA, encodeLeafPte(0x3000n, 3, { ap: 1 }));
      expect(r.x(1, ssid, IOVA, R)).toMatchObject({ ok: true, pa: 0x3000 });
      const f = r.fault(1, ssid - 2 ** split, IOVA, R); // L1CD[2] invalid
      expect(f.vendor.name).toBe("C_BAD_SUBSTREAMID");
      expect(f.class).toBe("blocked");
      expect(f.vendor.raw).toEqual(
        recordBytes({ id: 0x08, streamId: 1, ssv: 1, substreamId: ssid - 2 ** split }),
      );
      expect(r.fault(1, 2 ** 12, IOVA, R).class).toBe("bad-config"); // beyond S1CDMax
    }
  });

  it("C_BAD_SUBSTREAMID: SSID beyond S1CDMax, SSID with S1CDMax=0, SSID on stage 2; SSID 0 with S1DSS=SSID0 is F_STREAM_DISABLED", () => {
    const r = ssidRig(0, 4);
    expect(r.fault(1, 16, 0, R).vendor.name).toBe("C_BAD_SUBSTREAMID");
    expect(r.fault(1, 0, 0, R).vendor.raw).toEqual(
      recordBytes({ id: 0x06, streamId: 1, ssv: 1, substreamId: 0 }),
    );
    const one = rig();
    one.ste(1, s1Ste(CD));
    expect(one.fault(1, 3, 0, R).vendor.raw).toEqual(
      recordBytes({ id: 0x08, streamId: 1, ssv: 1, substreamId: 3 }),
    );
    one.ste(2, { V: 1, Config: 6, ...s2Fields(PT) });
    expect(one.fault(2, 1, 0, R).vendor.name).toBe("C_BAD_SUBSTREAMID");
  });

  it("reserved encodings behave as the spec says: S1Fmt 0b11 as linear, S1DSS 0b11 as terminate", () => {
    const r = ssidRig(3, 4, 3);
    chain4k(r, PT, IOVA, encodeLeafPte(0x1000n, 3, { ap: 1 }));
    r.cd(CD + 2 * 64, s1Cd(PT));
    expect(r.x(1, 2, IOVA, R)).toMatchObject({ ok: true, pa: 0x1000 });
    expect(r.fault(1, -1, IOVA, R).vendor.name).toBe("F_STREAM_DISABLED");
  });

  it("F_STREAM_DISABLED for non-SSID DMA with S1DSS=terminate; S1DSS=bypass passes it through", () => {
    const r = ssidRig(0, 4, 0);
    const f = r.fault(1, -1, 0x1000, R);
    expect(f).toMatchObject({ class: "blocked", recorded: true });
    expect(f.vendor.raw).toEqual(recordBytes({ id: 0x06, streamId: 1 }));
    const b = ssidRig(0, 4, 1);
    expect(b.x(1, -1, 0x1000, R)).toMatchObject({ ok: true, pa: 0x1000 });
  });

  it("F_CD_FETCH when the CD is outside RAM", () => {
    const r = rig();
    r.ste(1, s1Ste(0x8000_0000_0000));
    expect(r.fault(1, -1, 0, R).vendor.raw).toEqual(
      recordBytes({ id: 0x09, streamId: 1, addr: 0x8000_0000_0000n }),
    );
  });

  const badCd: [string, Record<string, bigint | number>][] = [
    ["AA64=0", { AA64: 0 }],
    ["ENDI=1", { ENDI: 1 }],
    ["T0SZ=15", { T0SZ: 15 }],
    ["T0SZ=40", { T0SZ: 40 }],
    ["TG0=0b11", { TG0: 3 }],
    ["TG1=0b00 with EPD1=0", { EPD1: 0, TG1: 0 }],
    ["TTB0 beyond IPS", { IPS: 0, TTB0: 2 ** 33 }],
    ["S=1 without stalls", { S: 1 }],
  ];
  for (const [why, extra] of badCd) {
    it(`C_BAD_CD: ${why}`, () => {
      const r = rig();
      r.ste(1, s1Ste(CD));
      r.cd(CD, s1Cd(PT, extra));
      const f = r.fault(1, -1, 0, R);
      expect(f.class).toBe("bad-config");
      expect(f.vendor.raw).toEqual(recordBytes({ id: 0x0a, streamId: 1 }));
    });
  }

  it("reserved or oversized IPS/S2PS behave as the OAS cap", () => {
    const { r } = s1Rig(encodeLeafPte(0xff_0000_0000n, 3, { ap: 1 }), { IPS: 7 });
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: 0xff_0000_0000 });
    // 40-bit IPA from level 1 (two concatenated 4K tables), S2PS=0b111 capped to OAS = 40 bits.
    const s2 = rig({ oas: 40 });
    s2.ste(4, { V: 1, Config: 6, ...s2Fields(PT, { S2PS: 7, S2T0SZ: 24, S2SL0: 1 }) });
    s2.pte(PT + 512 * 8, encodeTablePte(BigInt(PT + 0x2000))); // IPA bit 39 set: the second table
    s2.pte(PT + 0x2000, encodeTablePte(BigInt(PT + 0x3000)));
    s2.pte(PT + 0x3000 + 8, encodeLeafPte(0xff_0000_0000n, 3, { ap: 1 }));
    s2.pte(PT + 0x3000 + 16, encodeLeafPte(0x100_0000_0000n, 3, { ap: 1 }));
    expect(s2.x(4, -1, 2 ** 39 + 0x1004, R)).toMatchObject({ ok: true, pa: 0xff_0000_0004 });
    expect(s2.fault(4, -1, 2 ** 39 + 0x2000, R).vendor.fields).toMatchObject({ S2: 1 });
    expect(s2.fault(4, -1, 2 ** 39 + 0x2000, R).vendor.name).toBe("F_ADDR_SIZE");
  });

  it("C_BAD_CD for HA/HD beyond IDR0.HTTU, and V=0 is a blocked CD", () => {
    const r = rig({}, { IDR0: IDR0 & ~(3n << 6n) });
    r.ste(1, s1Ste(CD));
    r.cd(CD, s1Cd(PT, { HA: 1 }));
    expect(r.fault(1, -1, 0, R).vendor.name).toBe("C_BAD_CD");
    const v0 = rig();
    v0.ste(1, s1Ste(CD));
    v0.cd(CD, s1Cd(PT, { V: 0 }));
    expect(v0.fault(1, -1, 0, R)).toMatchObject({
      class: "blocked",
      vendor: { name: "C_BAD_CD", code: 0x0a },
    });
  });
});

describe("stage 2 and nested", () => {
  it("stage 2 only: IPA = input, S2AP permissions, faults with S2=1 and the IPA", () => {
    const r = rig();
    r.ste(4, { V: 1, Config: 6, ...s2Fields(PT) });
    const entries = chain4k(r, PT, IOVA, encodeLeafPte(BigInt(PA), 3, { ap: 1 })); // S2AP = R
    expect(r.x(4, -1, IOVA + 4, R)).toEqual({ ok: true, pa: PA + 4, perm: Perm.R | Perm.X, sizeLg2: 12 });
    const f = r.fault(4, -1, IOVA + 4, W);
    expect(f.vendor.raw).toEqual(
      recordBytes({ id: 0x13, streamId: 4, s2: 1, cls: 2, inputAddr: BigInt(IOVA + 4), addr: BigInt(IOVA) }),
    );
    expect(f.vendor.fields.IPA).toBe(`0x${IOVA.toString(16)}`);
    r.pte(entries[3]!, 0n);
    r.b.flushCaches();
    expect(r.fault(4, -1, IOVA, R).vendor.fields.S2).toBe(1);
  });

  it("stage 2 with two concatenated 16K start tables (S2T0SZ=16, SL0 = level 1)", () => {
    const r = rig();
    r.ste(4, { V: 1, Config: 6, ...s2Fields(0x40_0000, { S2TG: 2, S2SL0: 2 }) });
    // Level 1 indexes IPA[47:36] over two 16K tables; level 2 [35:25], level 3 [24:14].
    const ipa = 2 ** 47 + 0x4000;
    r.pte(0x40_0000 + 2048 * 8, encodeTablePte(0x50_0000n));
    r.pte(0x50_0000, encodeTablePte(0x54_0000n));
    r.pte(0x54_0000 + 8, encodeLeafPte(0x10_0000n, 3, { ap: 3 }));
    expect(r.x(4, -1, ipa + 5, W)).toMatchObject({ ok: true, pa: 0x10_0005, sizeLg2: 14 });
  });

  it("stage 2: an IPA beyond S2T0SZ is a stage-2 F_TRANSLATION", () => {
    const r = rig();
    r.ste(4, { V: 1, Config: 6, ...s2Fields(PT, { S2T0SZ: 25, S2SL0: 1 }) });
    const f = r.fault(4, -1, 2 ** 39, R);
    expect(f.vendor.fields).toMatchObject({ S2: 1, CLASS: "IN" });
  });

  function nestedRig() {
    // Guest: CD at IPA 0x1000_0000, S1 tables at IPA 0x2000_0000.., output IPA 0x3000_0000.
    // Host S2: identity-offset map IPA x -> x + 0x100_0000 for those pages.
    const r = rig();
    const S2 = 0x80_0000;
    r.ste(6, { V: 1, Config: 7, S1ContextPtr: 0x1000_0000, ...s2Fields(S2) });
    const s2map = (ipa: number, extra = {}) =>
      chain4k(
        r,
        S2 + (ipa / 0x1000_0000) * 0x10_0000,
        ipa,
        encodeLeafPte(BigInt(ipa + 0x100_0000), 3, { ap: 3, ...extra }),
      );
    // Reuse the same upper tables: build all chains under one root by sharing levels 0-2 per 1G region.
    const cdHpa = 0x1100_0000;
    r.cd(cdHpa, s1Cd(0x2000_0000));
    for (const l of [0, 1, 2, 3]) void l;
    return { r, S2, s2map, cdHpa };
  }

  it("nested: CD and stage-1 tables are IPAs walked through stage 2", () => {
    const r = rig();
    const S2 = 0x80_0000;
    r.ste(6, { V: 1, Config: 7, S1ContextPtr: 0x1000_0000, ...s2Fields(S2) });
    // Stage 2: one level-1 table, 2M blocks: IPA [0x1000_0000, +2M) -> +0x100_0000, and so on.
    r.pte(S2, encodeTablePte(BigInt(S2 + 0x1000)));
    r.pte(S2 + 0x1000, encodeTablePte(BigInt(S2 + 0x2000)));
    for (const ipa of [0x1000_0000, 0x2000_0000, 0x3000_0000]) {
      r.pte(S2 + 0x2000 + (ipa / 0x20_0000) * 8, encodeLeafPte(BigInt(ipa + 0x100_0000), 2, { ap: 3 }));
    }
    r.cd(0x1100_0000, s1Cd(0x2000_0000));
    // Guest stage 1 at IPA 0x2000_0000 (HPA 0x2100_0000): VA 0x4000 -> IPA 0x3000_5000.
    r.pte(0x2100_0000, encodeTablePte(0x2000_1000n));
    r.pte(0x2100_1000, encodeTablePte(0x2000_2000n));
    r.pte(0x2100_2000, encodeTablePte(0x2000_3000n));
    r.pte(0x2100_3000 + 4 * 8, encodeLeafPte(0x3000_5000n, 3, { ap: 1 }));
    expect(r.x(6, -1, 0x4321, W)).toEqual({
      ok: true,
      pa: 0x3100_5321,
      perm: Perm.R | Perm.W | Perm.X,
      sizeLg2: 12,
    });
    // A stage-2 fault on the output IPA: CLASS=IN, S2=1, IPA recorded.
    r.pte(0x2100_3000 + 5 * 8, encodeLeafPte(0x5000_0000n, 3, { ap: 1 }));
    const f = r.fault(6, -1, 0x5000, R);
    expect(f.vendor.raw).toEqual(
      recordBytes({ id: 0x10, streamId: 6, rnw: 1, s2: 1, cls: 2, inputAddr: 0x5000n, addr: 0x5000_0000n }),
    );
    // A stage-2 fault fetching a stage-1 table: CLASS=TT with the table's IPA.
    r.pte(0x2100_2000 + 8, encodeTablePte(0x6000_0000n));
    const tt = r.fault(6, -1, 0x20_0000, R);
    expect(tt.vendor.fields).toMatchObject({ S2: 1, CLASS: "TT", IPA: "0x60000000" });
    // A stage-2 fault fetching the CD: CLASS=CD.
    r.ste(7, { V: 1, Config: 7, S1ContextPtr: 0x7000_0000, ...s2Fields(S2) });
    expect(r.fault(7, -1, 0, R).vendor.fields).toMatchObject({ S2: 1, CLASS: "CD", IPA: "0x70000000" });
    void nestedRig;
  });
});

describe("command queue", () => {
  it("a config change is stale until CFGI_STE; a table change until TLBI_NH_VA", async () => {
    const { encodeCommand } = await import("./rig.ts");
    const { r, entries } = s1Rig();
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
    r.pte(entries[3]!, encodeLeafPte(0x9000n, 3, { ap: 1 }));
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
    r.cmd(encodeCommand({ op: 0x12, asid: 8, addr: BigInt(IOVA) })); // another ASID: still stale
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
    r.cmd(encodeCommand({ op: 0x12, asid: 7, addr: BigInt(IOVA) }));
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: 0x9000 });
    r.ste(1, { V: 1, Config: 4 });
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: 0x9000 });
    r.cmd(encodeCommand({ op: 0x03, sid: 1 }));
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: IOVA });
  });

  it("global entries survive TLBI_NH_ASID but not TLBI_NH_VA of another ASID", async () => {
    const { encodeCommand } = await import("./rig.ts");
    const { r, entries } = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 1, ng: 0 }));
    r.x(1, -1, IOVA, R);
    r.pte(entries[3]!, encodeLeafPte(0x9000n, 3, { ap: 1 }));
    r.cmd(encodeCommand({ op: 0x11, asid: 7 }));
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ pa: PA });
    r.cmd(encodeCommand({ op: 0x12, asid: 99, addr: BigInt(IOVA) }));
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ pa: 0x9000 });
  });

  it("range TLBI covers (NUM+1)*2^SCALE granules", async () => {
    const { encodeCommand } = await import("./rig.ts");
    const { r, entries } = s1Rig();
    r.x(1, -1, IOVA, R);
    r.pte(entries[3]!, encodeLeafPte(0x9000n, 3, { ap: 1 }));
    r.cmd(encodeCommand({ op: 0x12, asid: 7, tg: 1, num: 1, scale: 1, addr: BigInt(IOVA - 0x5000) })); // 4 pages below
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ pa: PA });
    r.cmd(encodeCommand({ op: 0x12, asid: 7, tg: 1, num: 2, scale: 1, addr: BigInt(IOVA - 0x5000) })); // 6 pages
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ pa: 0x9000 });
  });

  it("an unknown opcode stops the queue with CERROR_ILL and GERROR.CMDQ_ERR until GERRORN", async () => {
    const { encodeCommand } = await import("./rig.ts");
    const r = rig();
    r.cmd(encodeCommand({ op: 0x46 }), [0x7fn, 0n], encodeCommand({ op: 0x46 }));
    expect(r.b.hw.readRegister("CMDQ_CONS")).toBe((1n << 24n) | 1n);
    expect(r.b.hw.readRegister("GERROR") & 1n).toBe(1n);
    // Software replaces the bad command with a SYNC and acknowledges.
    r.memory.write64(0x30_0000 + 16, 0x46n);
    r.b.hw.writeRegister("GERRORN", r.b.hw.readRegister("GERROR"));
    expect(r.b.hw.readRegister("CMDQ_CONS")).toBe(3n);
  });

  it("TLBI_S2_IPA on a stage-1-only SMMU, EL2 TLBIs without HYP and SSEC=1 are illegal", async () => {
    const { encodeCommand } = await import("./rig.ts");
    for (const [cmd, cfg] of [
      [encodeCommand({ op: 0x2a }), { stages: "s1" as const }],
      [encodeCommand({ op: 0x20 }), {}],
      [[0x46n | (1n << 10n), 0n] as [bigint, bigint], {}],
    ] as const) {
      const r = rig(cfg);
      r.cmd(cmd as [bigint, bigint]);
      expect(Number(r.b.hw.readRegister("CMDQ_CONS") >> 24n) & 0x7f).toBe(1);
    }
  });

  it("CR0 writes are acknowledged in CR0ACK", () => {
    const r = rig();
    r.b.hw.writeRegister("CR0", 0x5n);
    expect(r.b.hw.readRegister("CR0ACK")).toBe(0x5n);
    expect(r.b.hw.enabled).toBe(true);
  });
});

describe("event queue", () => {
  it("a full queue discards records and toggles EVENTQ_PROD.OVFLG", () => {
    const r = rig();
    for (let i = 0; i < 8; i++) expect(r.fault(0x100 + i, -1, 0, R).recorded).toBe(true);
    const f = r.fault(0x200, -1, 0, R);
    expect(f.recorded).toBe(false);
    expect(r.b.hw.readRegister("EVENTQ_PROD") >> 31n).toBe(1n);
    const ev = r.events();
    expect(ev.map((e) => e.streamId)).toEqual([0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107]);
    expect(r.fault(0x300, -1, 0, R).recorded).toBe(true);
  });

  it("records nothing while EVENTQ is disabled", () => {
    const r = rig({}, { CR0: 1n });
    expect(r.fault(0x100, -1, 0, R).recorded).toBe(false);
  });
});

describe("contiguous hint", () => {
  // The run's output is aligned like its input (DDI 0487 D8.7.1): PA page 7 of its 64K run, as IOVA is.
  // (These tests used PA = page 5 of its run, a misprogrammed run whose reported 64K region did not
  // hold the PA at the IOVA's offset; that case is "a misaligned run reports the leaf alone" below.)
  const RUN_PA = PA + 0x2000;
  it("a leaf with Contiguous=1 reports the whole run (16 x 4K = 64K) as its region", () => {
    const { r } = s1Rig(encodeLeafPte(BigInt(RUN_PA), 3, { ap: 1, ng: 1, cont: 1 }));
    expect(r.x(1, -1, IOVA + 0x10, R)).toEqual({ ok: true, pa: RUN_PA + 0x10, perm: 7, sizeLg2: 16 });
    expect(r.x(1, -1, IOVA + 0x10, R)).toEqual({ ok: true, pa: RUN_PA + 0x10, perm: 7, sizeLg2: 16 });
  });

  it("invalidating any page of the run drops the cached entry", async () => {
    const { encodeCommand } = await import("./rig.ts");
    const { r, entries } = s1Rig(encodeLeafPte(BigInt(RUN_PA), 3, { ap: 1, ng: 1, cont: 1 }));
    r.x(1, -1, IOVA, R);
    r.pte(entries[3]!, encodeLeafPte(0x9000n, 3, { ap: 1, ng: 1 }));
    // IOVA is page 7 of its 64K run; invalidate page 0 of the run.
    const runBase = IOVA - (IOVA % 0x1_0000);
    r.cmd(encodeCommand({ op: 0x12, asid: 7, addr: BigInt(runBase + 0x3000) }));
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ pa: 0x9000, sizeLg2: 12 });
  });

  it("a misaligned run (CONSTRAINED UNPREDICTABLE) reports the leaf alone: the region holds the PA", () => {
    const { r } = s1Rig(encodeLeafPte(BigInt(PA), 3, { ap: 1, ng: 1, cont: 1 }));
    expect(r.x(1, -1, IOVA + 0x10, R)).toEqual({ ok: true, pa: PA + 0x10, perm: 7, sizeLg2: 12 });
    expect(r.x(1, -1, IOVA + 0x10, R)).toEqual({ ok: true, pa: PA + 0x10, perm: 7, sizeLg2: 12 });
  });
});

describe("top byte ignore", () => {
  it("TBI0 ignores VA[63:56] for TTB0 addresses; without it they fault", () => {
    const tagged = 0x5a00_0000_0000_0000n + BigInt(IOVA);
    const on = s1Rig(undefined, { TBI: 1 }).r;
    expect(on.x(1, -1, tagged + 8n, R)).toMatchObject({ ok: true, pa: PA + 8 });
    const off = s1Rig().r;
    expect(off.fault(1, -1, tagged, R).vendor.name).toBe("F_TRANSLATION");
  });
});
