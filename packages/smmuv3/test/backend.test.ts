import type { Domain } from "@iommu-kit/core";
import {
  Access,
  createTranslation,
  Intent,
  IommuError,
  outcomeOf,
  Perm,
  PhysicalMemory,
} from "@iommu-kit/core";
import { createTestMemory } from "@iommu-kit/core/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { SmmuNestedDomain, SmmuPagingDomain, SmmuV3Config, SmmuViommu } from "../src/index.ts";
import {
  CmdOp,
  encodeCd,
  encodeCommand,
  encodeLeafPte,
  encodeTablePte,
  type SmmuV3Backend,
  smmuv3Backend,
} from "../src/index.ts";

const R = Access.READ;
const W = Access.WRITE;

function make(config: SmmuV3Config = {}, ram = 2 ** 32, tablesSize = 2 ** 28) {
  const { memory, tables } = createTestMemory(ram, tablesSize);
  const b = smmuv3Backend.create({ memory, tables, name: "smmu0" }, config) as SmmuV3Backend;
  const x = (rid: number, pasid: number, iova: number, access: number) => {
    const out = createTranslation();
    return outcomeOf(b.translate(rid, pasid, iova, access, out), out);
  };
  return { memory, tables, b, x };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  return "none";
}

describe("devices and capabilities", () => {
  it("reports intents, PASID width, formats and raw IDRs from the ID registers", () => {
    const { b } = make();
    b.addDevice({ rid: 1, pasidBits: 8 });
    b.addDevice({ rid: 2, pasidBits: 0 });
    const c = b.capabilities(1);
    expect(c.intents).toEqual(["rid", "pasid", "rid-all-pasids"]);
    expect(c.maxPasidLog2).toBe(8);
    expect(c.formats).toEqual([
      "arm-lpae-s1-4k",
      "arm-lpae-s1-16k",
      "arm-lpae-s1-64k",
      "arm-lpae-s2-4k",
      "arm-lpae-s2-16k",
      "arm-lpae-s2-64k",
    ]);
    expect(c.pageSizeBitmap).toBe(
      (1n << 12n) | (1n << 21n) | (1n << 30n) | (1n << 14n) | (1n << 25n) | (1n << 16n) | (1n << 29n),
    );
    expect(c.hwInfo).toMatchObject({ type: "arm-smmuv3", iidr: 0x43b, aidr: 2 });
    if (c.hwInfo.type === "arm-smmuv3") {
      expect(c.hwInfo.idr[0] & 3).toBe(3);
      expect((c.hwInfo.idr[1] >>> 6) & 0x1f).toBe(20);
    }
    expect(b.capabilities(2).intents).toEqual(["rid", "rid-all-pasids"]);
    expect(b.reservedRegions(1)).toEqual([{ start: 0x800_0000, last: 0x80f_ffff }]);
  });

  it("stage-1-only SMMUs list no rid-all-pasids; stage-2-only list no pasid", () => {
    const s1 = make({ stages: "s1", ssidBits: 5 }).b;
    s1.addDevice({ rid: 1, pasidBits: 20 });
    expect(s1.capabilities(1)).toMatchObject({ intents: ["rid", "pasid"], maxPasidLog2: 5 });
    const s2 = make({ stages: "s2", oas: 40 }).b;
    s2.addDevice({ rid: 1, pasidBits: 20 });
    expect(s2.capabilities(1)).toMatchObject({
      intents: ["rid"],
      maxPasidLog2: 0,
      outputAddressBits: 40,
      inputAddressBits: 40,
    });
  });

  it("refuses bad rids and configs with typed errors", () => {
    const { b } = make({ sidBits: 8 });
    expect(code(() => b.addDevice({ rid: 256, pasidBits: 0 }))).toBe("EINVAL");
    b.addDevice({ rid: 3, pasidBits: 0 });
    expect(code(() => b.addDevice({ rid: 3, pasidBits: 0 }))).toBe("EEXIST");
    expect(code(() => b.capabilities(4))).toBe("ENOENT");
    const { memory, tables } = createTestMemory();
    expect(code(() => smmuv3Backend.create({ memory, tables, name: "x" }, { oas: 47 }))).toBe("EINVAL");
    expect(code(() => smmuv3Backend.create({ memory, tables, name: "x" }, { bogus: 1 }))).toBe("EINVAL");
  });

  it("a new device's STE aborts silently; removing it frees its L2 stream table", () => {
    const { b, x, tables } = make();
    const before = tables.stats().blocks;
    b.addDevice({ rid: 0x301, pasidBits: 0 });
    expect(tables.stats().blocks).toBe(before + 1);
    expect(x(0x301, -1, 0x1000, R)).toMatchObject({
      ok: false,
      fault: { class: "blocked", vendor: { name: "STE_ABORT" } },
    });
    expect(x(0x401, -1, 0x1000, R)).toMatchObject({
      ok: false,
      fault: { vendor: { name: "C_BAD_STREAMID" } },
    });
    b.removeDevice(0x301);
    expect(tables.stats().blocks).toBe(before);
    expect(x(0x301, -1, 0x1000, R)).toMatchObject({
      ok: false,
      fault: { vendor: { name: "C_BAD_STREAMID" } },
    });
  });
});

describe("paging domains", () => {
  it("maps with the largest blocks alignment allows and frees empty tables on unmap", () => {
    const { b, x, tables } = make();
    b.addDevice({ rid: 1, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" }) as SmmuPagingDomain;
    b.attach(1, Intent.rid, d);
    const base = tables.stats().blocks;
    d.map(0x4000_0000, 0x8000_0000, 0x4000_0000 + 0x20_0000 + 0x1000, Perm.R | Perm.W);
    expect(tables.stats().blocks).toBe(base + 3); // level-1 table, level-2 table, level-3 table
    expect(x(1, -1, 0x4000_0000 + 0x1234_5678, W)).toMatchObject({ ok: true, pa: 0x9234_5678, sizeLg2: 30 });
    expect(x(1, -1, 0x8000_0000 + 0x10_0008, R)).toMatchObject({ ok: true, pa: 0xc010_0008, sizeLg2: 21 });
    expect(x(1, -1, 0x8020_0000 + 8, R)).toMatchObject({ ok: true, pa: 0xc020_0008, sizeLg2: 12 });
    expect(d.unmap(0x4000_0000, 0x4000_0000 + 0x20_0000 + 0x1000)).toBe(0x4000_0000 + 0x20_0000 + 0x1000);
    expect(tables.stats().blocks).toBe(base);
    expect(x(1, -1, 0x4000_0000, R)).toMatchObject({ ok: false, fault: { class: "translation" } });
  });

  it("unmap issues a range TLBI and CMD_SYNC (counted as invalidations)", () => {
    const { b, x } = make();
    b.addDevice({ rid: 1, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" });
    b.attach(1, Intent.rid, d);
    d.map(0x10_0000, 0x20_0000, 0x3000, Perm.R);
    expect(x(1, -1, 0x10_2000, R)).toMatchObject({ ok: true, pa: 0x20_2000 });
    const inv = b.counters().invalidations;
    d.unmap(0x10_0000, 0x3000);
    expect(b.counters().invalidations).toBe(inv + 1); // one TLBI_NH_VA with NUM=2 (3 pages)
    expect(x(1, -1, 0x10_2000, R).ok).toBe(false);
  });

  it("refuses splitting a block, misaligned and out-of-aperture maps, and PA beyond the OAS", () => {
    const { b } = make({ oas: 40 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0, 0, 0x20_0000, Perm.R);
    expect(code(() => d.unmap(0, 0x1000))).toBe("EINVAL");
    expect(code(() => d.map(2 ** 48, 0, 0x1000, Perm.R))).toBe("EINVAL");
    // A PA beyond the OAS is ERANGE, as io-pgtable-arm's arm_lpae_map returns (was EINVAL).
    expect(code(() => d.map(0x40_0000, 2 ** 40, 0x1000, Perm.R))).toBe("ERANGE");
    expect(code(() => d.map(0x40_0000, 0, 0x1000, 0))).toBe("EINVAL");
    expect(d.iovaToPhys(0x1234)).toBe(0x1234);
  });

  for (const [format, page] of [
    ["arm-lpae-s1-16k", 0x4000],
    ["arm-lpae-s1-64k", 0x1_0000],
    ["arm-lpae-s2-16k", 0x4000],
    ["arm-lpae-s2-64k", 0x1_0000],
  ] as const) {
    it(`${format}: pages and blocks translate through the hardware walk`, () => {
      const { b, x } = make();
      b.addDevice({ rid: 9, pasidBits: 0 });
      const d = b.allocDomain({ type: "paging", format });
      b.attach(9, Intent.rid, d);
      const block = page === 0x4000 ? 2 ** 25 : 2 ** 29;
      d.map(block, 2 * block, block + page, Perm.R | Perm.W);
      expect(x(9, -1, block + 0x123, W)).toMatchObject({
        ok: true,
        pa: 2 * block + 0x123,
        sizeLg2: Math.log2(block),
      });
      expect(x(9, -1, 2 * block + 8, R)).toMatchObject({
        ok: true,
        pa: 3 * block + 8,
        sizeLg2: Math.log2(page),
      });
      expect(x(9, -1, 2 * block + page, R)).toMatchObject({ ok: false, fault: { class: "translation" } });
      expect(d.unmap(block, block + page)).toBe(block + page);
    });
  }

  it("free: EBUSY while attached, then releases every table and invalidates the ASID", () => {
    const { b, tables } = make();
    b.addDevice({ rid: 1, pasidBits: 0 });
    const before = tables.stats().blocks;
    const d = b.allocDomain({ type: "paging" });
    d.map(0, 0, 0x1000, Perm.R);
    b.attach(1, Intent.rid, d);
    expect(code(() => d.free())).toBe("EBUSY");
    b.detach(1, Intent.rid);
    d.free();
    expect(tables.stats().blocks).toBe(before);
    expect(code(() => d.map(0, 0, 0x1000, Perm.R))).toBe("EINVAL");
  });

  it("random map/unmap sequences match a reference model; cached == walked", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            op: fc.constantFrom("map", "unmap"),
            page: fc.integer({ min: 0, max: 1023 }),
            pages: fc.integer({ min: 1, max: 600 }),
            pa: fc.integer({ min: 0, max: 2 ** 18 }),
            prot: fc.constantFrom(1, 3),
          }),
          { maxLength: 12 },
        ),
        (ops) => {
          const { b, x } = make({}, 2 ** 32, 2 ** 26);
          b.addDevice({ rid: 1, pasidBits: 0 });
          const d = b.allocDomain({ type: "paging" });
          b.attach(1, Intent.rid, d);
          const model = new Map<number, [number, number]>();
          for (const o of ops) {
            const iova = o.page * 0x1000;
            const len = Math.min(o.pages, 1024 - o.page) * 0x1000;
            if (o.op === "map") {
              let overlap = false;
              for (let p = 0; p < len; p += 0x1000) if (model.has(iova + p)) overlap = true;
              let e = "none";
              try {
                d.map(iova, o.pa * 0x1000, len, o.prot);
              } catch (err) {
                e = (err as IommuError).code;
              }
              expect(e).toBe(overlap ? "EEXIST" : "none");
              if (!overlap)
                for (let p = 0; p < len; p += 0x1000) model.set(iova + p, [o.pa * 0x1000 + p, o.prot]);
            } else {
              let e = "none";
              try {
                d.unmap(iova, len);
              } catch (err) {
                e = (err as IommuError).code;
              }
              if (e === "none") for (let p = 0; p < len; p += 0x1000) model.delete(iova + p);
            }
          }
          for (let page = 0; page < 1024; page += 7) {
            const m = model.get(page * 0x1000);
            const r1 = x(1, -1, page * 0x1000 + 4, W);
            const r2 = x(1, -1, page * 0x1000 + 4, R);
            b.flushCaches();
            const r3 = x(1, -1, page * 0x1000 + 4, R);
            expect(r3.ok ? r3 : r3.fault.vendor.name).toEqual(r2.ok ? r2 : r2.fault.vendor.name);
            if (m === undefined) expect(r2.ok).toBe(false);
            else {
              expect(r2).toMatchObject({ ok: true, pa: m[0] + 4 });
              expect(r1.ok).toBe((m[1] & Perm.W) !== 0);
            }
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("PASIDs, identity, stage 2", () => {
  it("a PASID gets CD[SSID]; the RID blocked meanwhile is S1DSS=terminate (F_STREAM_DISABLED)", () => {
    const { b, x } = make();
    b.addDevice({ rid: 5, pasidBits: 20 });
    const p = b.allocDomain({ type: "paging", flags: { pasid: true } });
    p.map(0x1000, 0x5000, 0x1000, Perm.R);
    b.attach(5, Intent.pasid(77), p);
    expect(x(5, 77, 0x1008, R)).toMatchObject({ ok: true, pa: 0x5008 });
    expect(x(5, -1, 0x1008, R)).toMatchObject({
      ok: false,
      fault: { class: "blocked", vendor: { name: "F_STREAM_DISABLED" } },
    });
    expect(x(5, 78, 0x1008, R)).toMatchObject({
      ok: false,
      fault: { class: "blocked", vendor: { name: "C_BAD_CD" } },
    });
    // S1DSS=terminate: SSID 0 is an ordinary (invalid) CD.
    expect(x(5, 0, 0x1008, R)).toMatchObject({ ok: false, fault: { vendor: { name: "C_BAD_CD" } } });
    expect(code(() => b.attach(5, Intent.pasid(0), p))).toBe("EINVAL");
    b.detach(5, Intent.pasid(77));
    expect(x(5, 77, 0x1008, R)).toMatchObject({ ok: false });
    expect(x(5, -1, 0x1008, R)).toMatchObject({ ok: false, fault: { vendor: { name: "STE_ABORT" } } });
  });

  it("identity RID: bypass; with PASIDs attached, S1DSS=bypass", () => {
    const { b, x } = make();
    b.addDevice({ rid: 5, pasidBits: 4 });
    b.attach(5, Intent.rid, b.allocDomain({ type: "identity" }));
    expect(x(5, -1, 0x1234_5678, W)).toMatchObject({ ok: true, pa: 0x1234_5678 });
    const p = b.allocDomain({ type: "paging" });
    p.map(0, 0x9000, 0x1000, Perm.R);
    b.attach(5, Intent.pasid(3), p);
    expect(x(5, -1, 0x1234_5678, W)).toMatchObject({ ok: true, pa: 0x1234_5678 });
    expect(x(5, 3, 0x10, R)).toMatchObject({ ok: true, pa: 0x9010 });
  });

  it("a stage-2 RID domain excludes PASIDs (and the reverse)", () => {
    const { b, x } = make();
    b.addDevice({ rid: 5, pasidBits: 4 });
    const s2 = b.allocDomain({ type: "paging", format: "arm-lpae-s2-4k" });
    s2.map(0x2000, 0x3000, 0x1000, Perm.R | Perm.W);
    b.attach(5, Intent.rid, s2);
    expect(x(5, -1, 0x2010, W)).toMatchObject({ ok: true, pa: 0x3010 });
    const p = b.allocDomain({ type: "paging" });
    expect(code(() => b.attach(5, Intent.pasid(1), p))).toBe("EINVAL");
    b.detach(5, Intent.rid);
    b.attach(5, Intent.pasid(1), p);
    expect(code(() => b.attach(5, Intent.rid, s2))).toBe("EINVAL");
    expect(
      code(() => b.allocDomain({ type: "paging", format: "arm-lpae-s2-4k", flags: { pasid: true } })),
    ).toBe("EOPNOTSUPP");
    expect(
      code(() => b.allocDomain({ type: "paging", format: "arm-lpae-s1-4k", flags: { nestParent: true } })),
    ).toBe("EOPNOTSUPP");
  });

  it("an attach that cannot allocate its CD table fails with ENOMEM and changes nothing", () => {
    const { b, x, tables, memory } = make({}, 2 ** 32, 2 ** 21);
    b.addDevice({ rid: 5, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0, 0x7000, 0x1000, Perm.R);
    const hog: number[] = [];
    for (;;) {
      try {
        hog.push(tables.alloc(12));
      } catch {
        break;
      }
    }
    const snap = memory.snapshot();
    const blocks = tables.stats().blocks;
    expect(code(() => b.attach(5, Intent.rid, d))).toBe("ENOMEM");
    expect(tables.stats().blocks).toBe(blocks);
    expect(b.attached(5, Intent.rid)).toBe(null);
    expect(x(5, -1, 0, R)).toMatchObject({ ok: false, fault: { vendor: { name: "STE_ABORT" } } });
    void snap;
    for (const h of hog) tables.free(h);
    b.attach(5, Intent.rid, d);
    expect(x(5, -1, 0, R)).toMatchObject({ ok: true, pa: 0x7000 });
  });
});

describe("nested (rid-all-pasids) on a vIOMMU", () => {
  function nested() {
    const m = make();
    const { b, memory } = m;
    b.addDevice({ rid: 8, pasidBits: 20 });
    const parent = b.allocDomain({ type: "paging", flags: { nestParent: true } }) as SmmuPagingDomain;
    expect(parent.format).toBe("arm-lpae-s2-4k");
    // Guest RAM: IPA [0, 16M) -> HPA [0x1000_0000, +16M).
    parent.map(0, 0x1000_0000, 0x100_0000, Perm.R | Perm.W);
    // Guest CD table (linear, 4 CDs) at IPA 0x1000, guest S1 tables at IPA 0x10_0000...
    const hpa = (ipa: number) => ipa + 0x1000_0000;
    const cd = encodeCd({ V: 1, T0SZ: 16, EPD1: 1, IPS: 5, AA64: 1, R: 1, ASID: 42, TTB0: 0x10_0000 });
    for (let i = 0; i < 8; i++) memory.write64(hpa(0x1000 + 64) + i * 8, cd[i]!);
    memory.write64(hpa(0x10_0000), encodeTablePte(0x10_1000n));
    memory.write64(hpa(0x10_1000), encodeTablePte(0x10_2000n));
    memory.write64(hpa(0x10_2000), encodeTablePte(0x10_3000n));
    memory.write64(hpa(0x10_3000) + 8, encodeLeafPte(0x50_0000n, 3, { ap: 1, ng: 1 }));
    const ste0 = 1n | (5n << 1n) | 0x1000n | (2n << 59n); // V, Config=S1, S1ContextPtr IPA 0x1000, S1CDMax 2
    const ste1 = 2n; // S1DSS=SSID0
    const viommu = b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    viommu.addVdevice(8, 0x99); // vSID 0x99
    const dom = viommu.allocNested({ ste: [ste0, `0x${ste1.toString(16)}`] }, {}) as SmmuNestedDomain;
    b.attach(8, Intent.ridAllPasids, dom);
    return { ...m, parent, dom, hpa, viommu };
  }

  it("walks the guest CD table and stage 1 through the parent's stage 2", () => {
    const { x, hpa } = nested();
    expect(x(8, 1, 0x1008, W)).toMatchObject({ ok: true, pa: hpa(0x50_0008) });
    expect(x(8, -1, 0x1008, R)).toMatchObject({
      ok: false,
      fault: { class: "blocked", vendor: { name: "C_BAD_CD" } },
    });
    expect(x(8, 3, 0x1008, R)).toMatchObject({ ok: false });
  });

  it("guest invalidations through the vIOMMU: TLBI_NH_VA takes the parent's VMID; unsupported commands are EIO with the handled count", () => {
    const { b, x, memory, hpa, viommu: dom } = nested();
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x50_0008) });
    memory.write64(hpa(0x10_3000) + 8, encodeLeafPte(0x60_0000n, 3, { ap: 1, ng: 1 }));
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x50_0008) });
    const [w0, w1] = encodeCommand({ op: CmdOp.TLBI_NH_VA, asid: 42, vmid: 999, addr: 0x1000n });
    expect(dom.invalidate([[w0, w1]])).toBe(1);
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x60_0008) });
    try {
      dom.invalidate([
        encodeCommand({ op: CmdOp.CFGI_CD, sid: 0x99, ssid: 1 }),
        encodeCommand({ op: CmdOp.TLBI_S2_IPA }),
      ]);
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: "EIO", details: { handled: 1 } });
    }
    void b;
  });

  it("no-PASID traffic (S1DSS=SSID0, CD 0): a guest remap stays stale until TLBI_NH_VA, a CD change until CFGI_CD", () => {
    const { x, memory, hpa, viommu: dom } = nested();
    const cd0 = encodeCd({ V: 1, T0SZ: 16, EPD1: 1, IPS: 5, AA64: 1, R: 1, ASID: 43, TTB0: 0x10_0000 });
    for (let i = 0; i < 8; i++) memory.write64(hpa(0x1000) + i * 8, cd0[i]!);
    // CD 0 was never fetched (the earlier C_BAD_CD is not cached): it is read now.
    expect(x(8, -1, 0x1008, R)).toMatchObject({ ok: true, pa: hpa(0x50_0008) });
    // The guest remaps its stage-1 leaf: the nested IOTLB entry is still used.
    memory.write64(hpa(0x10_3000) + 8, encodeLeafPte(0x60_0000n, 3, { ap: 1, ng: 1 }));
    expect(x(8, -1, 0x1008, R)).toMatchObject({ ok: true, pa: hpa(0x50_0008) });
    // Another ASID's TLBI leaves it; the guest's TLBI_NH_VA for ASID 43 drops it.
    expect(dom.invalidate([encodeCommand({ op: CmdOp.TLBI_NH_VA, asid: 42, addr: 0x1000n })])).toBe(1);
    expect(x(8, -1, 0x1008, R)).toMatchObject({ ok: true, pa: hpa(0x50_0008) });
    expect(dom.invalidate([encodeCommand({ op: CmdOp.TLBI_NH_VA, asid: 43, addr: 0x1000n })])).toBe(1);
    expect(x(8, -1, 0x1008, R)).toMatchObject({ ok: true, pa: hpa(0x60_0008) });
    // The guest invalidates CD 0 in memory: the cached CD still translates until CFGI_CD.
    memory.write64(hpa(0x1000), 0n);
    expect(dom.invalidate([encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 43 })])).toBe(1);
    expect(x(8, -1, 0x1008, R)).toMatchObject({ ok: true, pa: hpa(0x60_0008) });
    expect(dom.invalidate([encodeCommand({ op: CmdOp.CFGI_CD, sid: 0x99, ssid: 0 })])).toBe(1);
    expect(x(8, -1, 0x1008, R)).toMatchObject({ ok: false, fault: { vendor: { name: "C_BAD_CD" } } });
  });

  it("the parent's unmap reaches nested entries (TLBI_S2_IPA + TLBI_NH_ALL)", () => {
    const { x, parent, hpa } = nested();
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x50_0008) });
    parent.unmap(0x40_0000, 0x40_0000);
    expect(x(8, 1, 0x1008, R)).toMatchObject({
      ok: false,
      fault: { vendor: { name: "F_TRANSLATION", fields: { S2: 1, CLASS: "IN" } } },
    });
  });

  it("vSTEs with bypass become the parent's stage 2; illegal ones are EIO; nested-on-parent is EOPNOTSUPP", () => {
    const { b, x, parent, viommu } = nested();
    const by = viommu.allocNested({ ste: [9n, 0n] }, {});
    b.attach(8, Intent.ridAllPasids, by);
    expect(x(8, -1, 0x2008, R)).toMatchObject({ ok: true, pa: 0x1000_2008 });
    expect(code(() => viommu.allocNested({ ste: [1n | (6n << 1n), 0n] }, {}))).toBe("EIO");
    expect(code(() => viommu.allocNested({ ste: [0xbn | (1n << 60n) | (1n << 55n), 0n] }, {}))).toBe("EIO");
    expect(code(() => viommu.allocNested({ ste: [0xbn] }, {}))).toBe("EINVAL");
    // iommufd_hwpt_nested_alloc: SMMUv3 has no ops->domain_alloc_nested (no Linux release nests on a parent).
    expect(code(() => b.allocDomain({ type: "nested", parent, data: { ste: [9n, 0n] } }))).toBe("EOPNOTSUPP");
    expect(code(() => parent.free())).toBe("EBUSY");
  });
});

describe("dirty tracking, snapshots, explain, dump", () => {
  it("DBM leaves start clean; a write marks them dirty; readDirty reports and clears", () => {
    const { b, x } = make();
    b.addDevice({ rid: 1, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging", flags: { dirtyTracking: true } }) as Domain;
    b.attach(1, Intent.rid, d);
    d.map(0, 0x10_0000, 0x4000, Perm.R | Perm.W);
    d.setDirtyTracking!(true);
    expect(x(1, -1, 0x2004, W)).toMatchObject({ ok: true, pa: 0x10_2004 });
    const bm = new Uint8Array(1);
    d.readDirty!(0, 0x4000, 12, bm, false);
    expect(bm[0]).toBe(0b0100);
    const again = new Uint8Array(1);
    d.readDirty!(0, 0x4000, 12, again, false);
    expect(again[0]).toBe(0);
    expect(x(1, -1, 0x2004, W)).toMatchObject({ ok: true });
    d.readDirty!(0, 0x4000, 12, again, true);
    expect(again[0]).toBe(0b0100);
  });

  it("fromRegisters over the memory image translates exactly as the live SMMU", () => {
    const { b, x, memory } = make();
    b.addDevice({ rid: 0x42, pasidBits: 4 });
    const d = b.allocDomain({ type: "paging" });
    b.attach(0x42, Intent.rid, d);
    d.map(0x20_0000, 0x60_0000, 0x20_0000, Perm.R);
    const regs = Object.fromEntries(
      ["IDR0", "IDR1", "IDR3", "IDR5", "STRTAB_BASE", "STRTAB_BASE_CFG", "CR0", "CR2", "GBPA"].map((n) => [
        n,
        b.hw.readRegister(n),
      ]),
    );
    const snap = smmuv3Backend.fromRegisters!(memory, regs);
    const out = createTranslation();
    expect(outcomeOf(snap.translate(0x42, -1, 0x21_2345, R, out), out)).toEqual(x(0x42, -1, 0x21_2345, R));
    expect(code(() => snap.addDevice({ rid: 1, pasidBits: 0 }))).toBe("EOPNOTSUPP");
    const steps = snap.explain!(0x42, -1, 0x21_2345n, R);
    expect(steps.map((s) => s.what)).toEqual(["L1STD", "STE", "CD", "S1 L0", "S1 L1", "S1 L2", "result"]);
    expect(steps.at(-1)!.address).toBe(0x61_2345);
    const dump = snap.dump!() as { streams: { streamId: number }[] };
    expect(dump.streams.map((s) => s.streamId)).toEqual([0x42]);
  });

  it("explain changes no counter, cache or event queue", () => {
    const { b } = make();
    b.addDevice({ rid: 1, pasidBits: 0 });
    const before = b.counters();
    const steps = b.explain(1, -1, 0x1000n, R);
    expect(steps.at(-1)!.note).toContain("STE_ABORT");
    expect(b.counters()).toEqual(before);
    expect(b.drainEvents()).toEqual([]);
  });
});

describe("misuse on the hot path", () => {
  it("refuses a negative or fractional IOVA and a bad PASID with IommuError EINVAL, even after hits (was RangeError; STYLE: IommuError for misuse, as vtd)", () => {
    const { b, x } = make();
    b.addDevice({ rid: 1, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" });
    b.attach(1, Intent.rid, d);
    d.map(0, 0x1000, 0x1000, Perm.R);
    expect(x(1, -1, 0x10, R)).toMatchObject({ ok: true, pa: 0x1010 });
    expect(x(1, -1, 0x10, R)).toMatchObject({ ok: true, pa: 0x1010 });
    expect(() => x(1, -1, -1, R)).toThrow(IommuError);
    expect(() => x(1, -1, 0.5 + 2 ** 40, R)).toThrow(IommuError);
    expect(() => x(1, -2, 0x10, R)).toThrow(IommuError);
    expect(() => x(-1, -1, 0x10, R)).toThrow(IommuError);
    expect(() => x(1, -1, 16.5, R)).toThrow(IommuError); // fractional, same page as a hit
  });
});

describe("map fast path", () => {
  it("an overlap found midway leaves the level-3 table byte-identical (EEXIST)", () => {
    const { b, memory } = make();
    const d = b.allocDomain({ type: "paging" }) as SmmuPagingDomain;
    d.map(0x40_0000 + 0x50_000, 0x9000_0000, 0x1000, Perm.R); // entry 0x50 of the table
    const before = memory.snapshot();
    expect(code(() => d.map(0x40_0000, 0x1000_0000, 0x100_000, Perm.R | Perm.W))).toBe("EEXIST");
    expect(PhysicalMemory.sameContents(before, memory.snapshot())).toBe(true);
    d.map(0x40_0000, 0x1000_0000, 0x50_000, Perm.R | Perm.W);
    expect(d.iovaToPhys(0x40_0000 + 0x4f_fff)).toBe(0x1004_ffff);
    expect(d.iovaToPhys(0x40_0000 + 0x50_008)).toBe(0x9000_0008);
  });
});

describe("stage-2 dirty tracking and register misuse", () => {
  it("a stage-2 DBM leaf becomes dirty (S2AP[1]) on the first write and is read back", () => {
    const { b, x } = make();
    b.addDevice({ rid: 1, pasidBits: 0 });
    const d = b.allocDomain({
      type: "paging",
      format: "arm-lpae-s2-4k",
      flags: { dirtyTracking: true },
    }) as Domain;
    b.attach(1, Intent.rid, d);
    d.map(0x2000_0000, 0x30_0000, 0x2000, Perm.R | Perm.W);
    expect(x(1, -1, 0x2000_1008, R)).toMatchObject({ ok: true, perm: Perm.R }); // writable-clean, no X
    expect(x(1, -1, 0x2000_1008, W)).toMatchObject({ ok: true, pa: 0x30_1008 });
    const bm = new Uint8Array(1);
    d.readDirty!(0x2000_0000, 0x2000, 12, bm, false);
    expect(bm[0]).toBe(0b10);
  });

  it("unknown register names are EINVAL; read-only registers ignore writes", () => {
    const { b, memory } = make();
    expect(code(() => b.hw.readRegister("NOPE"))).toBe("EINVAL");
    expect(code(() => smmuv3Backend.fromRegisters!(memory, { BOGUS: 1n }))).toBe("EINVAL");
    const idr0 = b.hw.readRegister("IDR0");
    b.hw.writeRegister("IDR0", 0n);
    expect(b.hw.readRegister("IDR0")).toBe(idr0);
    expect(b.hw.mmioRead(0x0, 4)).toBe(idr0);
    b.hw.mmioWrite(0x44, 4, 0x8010_0000n);
    expect(b.hw.mmioRead(0x44, 4)).toBe(0x10_0000n);
  });
});

describe("create", () => {
  it("a create that runs out of table memory frees what it took", () => {
    for (let nth = 1; nth <= 3; nth++) {
      const { memory, tables } = createTestMemory(2 ** 32, 2 ** 28);
      memory.failNth.arm(nth);
      let err = "none";
      try {
        smmuv3Backend.create({ memory, tables, name: "x" }, {});
      } catch (e) {
        err = (e as IommuError).code;
      }
      memory.failNth.disarm();
      expect(err).toBe("ENOMEM");
      expect(tables.stats().blocks).toBe(0);
    }
  });
});

describe("fail_nth sweep", () => {
  it("every driver operation is atomic when any of its table allocations fails", () => {
    const ops: [string, (s: ReturnType<typeof make>, d: SmmuPagingDomain[]) => void][] = [
      ["addDevice", (s) => s.b.addDevice({ rid: 0x777, pasidBits: 20 })],
      [
        "allocDomain",
        (s, d) => d.push(s.b.allocDomain({ type: "paging", flags: { pasid: true } }) as SmmuPagingDomain),
      ],
      ["map", (_s, d) => d[0]!.map(0x4000_0000, 0x1000_0000, 0x40_3000, Perm.R | Perm.W)],
      ["attach rid", (s, d) => s.b.attach(0x777, Intent.rid, d[0]!)],
      ["attach pasid", (s, d) => s.b.attach(0x777, Intent.pasid(0xabcde), d[0]!)],
    ];
    for (let upto = 0; upto < ops.length; upto++) {
      let failures = 0;
      for (let nth = 1; nth <= 6; nth++) {
        const s = make();
        const doms: SmmuPagingDomain[] = [];
        for (let i = 0; i < upto; i++) ops[i]![1](s, doms);
        const blocks = s.tables.stats().blocks;
        const snap = s.memory.snapshot();
        s.memory.failNth.arm(nth);
        let failed = false;
        try {
          ops[upto]![1](s, doms);
        } catch (e) {
          failed = (e as IommuError).code === "ENOMEM";
          if (!failed) throw e;
        }
        s.memory.failNth.disarm();
        if (failed) {
          failures++;
          expect(s.tables.stats().blocks, `${ops[upto]![0]} nth ${nth}`).toBe(blocks);
          expect(PhysicalMemory.sameContents(snap, s.memory.snapshot()), `${ops[upto]![0]} nth ${nth}`).toBe(
            true,
          );
        }
      }
      expect(failures, ops[upto]![0]).toBeGreaterThan(0);
    }
  });
});

describe("RID replacement keeps the CD table consistent", () => {
  it("S1 -> identity with a PASID attached: CD 0 cleared, S1DSS=bypass; S1 -> S2 frees the CD table", () => {
    const { b, x, tables, memory } = make();
    b.addDevice({ rid: 3, pasidBits: 8 });
    const s1 = b.allocDomain({ type: "paging" });
    s1.map(0, 0x5000, 0x1000, Perm.R);
    const p = b.allocDomain({ type: "paging" });
    p.map(0, 0x6000, 0x1000, Perm.R);
    b.attach(3, Intent.rid, s1);
    b.attach(3, Intent.pasid(9), p);
    expect(x(3, -1, 0x10, R)).toMatchObject({ ok: true, pa: 0x5010 });
    b.attach(3, Intent.rid, b.allocDomain({ type: "identity" }));
    expect(x(3, -1, 0x10, R)).toMatchObject({ ok: true, pa: 0x10 });
    expect(x(3, 9, 0x10, R)).toMatchObject({ ok: true, pa: 0x6010 });
    const dump = b.dump(3) as { streams: { cds: Record<string, unknown>; ste: Record<string, string> }[] };
    expect(Object.keys(dump.streams[0]!.cds)).toEqual(["9"]);
    expect(dump.streams[0]!.ste).toMatchObject({ Config: "0x5", S1DSS: "0x1", S1CDMax: "0x8" });
    b.detach(3, Intent.pasid(9));
    const s2 = b.allocDomain({ type: "paging", format: "arm-lpae-s2-4k" });
    s2.map(0, 0x7000, 0x1000, Perm.R);
    b.attach(3, Intent.rid, s1);
    const withCd = tables.stats().blocks;
    b.attach(3, Intent.rid, s2);
    expect(x(3, -1, 0x10, R)).toMatchObject({ ok: true, pa: 0x7010 });
    expect(tables.stats().blocks).toBe(withCd - 1); // the 16K linear CD table went away
    void memory;
  });
});
