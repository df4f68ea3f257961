import fc from "fast-check";
/**
 * The driver half: what addDevice / allocDomain / attach / map / unmap / invalidate
 * write into memory and submit, and the contract around them.
 */

import type { Domain } from "@iommu-kit/core";
import {
  Access,
  createTranslation,
  Intent,
  type IommuError,
  isIommuError,
  NO_PASID,
  Perm,
  PhysicalMemory,
  pageSizesLg2,
} from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { VtdBackend, VtdDomain } from "../src/backend.ts";
import { psiRange, vtdBackend, vtdFromRegisters } from "../src/backend.ts";
import { decodeScalableContextEntry } from "../src/format/context-entry.ts";
import { decodeFaultRecord, Fr } from "../src/format/fault-record.ts";
import { encodeFsEntry } from "../src/format/fs-pte.ts";
import { DescType } from "../src/format/inv-desc.ts";
import { decodePasidEntry, Pgtt } from "../src/format/pasid-entry.ts";
import { Reg } from "../src/format/registers.ts";
import { readWords } from "../src/internal/words.ts";
import { fresh, rewriteLeaf } from "./helpers.ts";
import { FS0, rig, SID } from "./rig.ts";

const R = Access.READ;
const W = Access.WRITE;
const DEV = 0x0108;
const GIB = 2 ** 30;

function xl(b: VtdBackend, rid: number, pasid: number, iova: number, access: number = R): number {
  const out = createTranslation();
  return b.translate(rid, pasid, iova, access, out) ? out.pa : -(out.fault!.vendor.code ?? 1);
}

function throwsCode(fn: () => unknown, code: string): IommuError {
  try {
    fn();
  } catch (e) {
    if (isIommuError(e) && e.code === code) return e;
    throw e;
  }
  throw new Error(`expected ${code}`);
}

function pasidEntryOf(b: VtdBackend, rid: number, pasid: number) {
  const ctx = decodeScalableContextEntry(b.contextEntryWords(rid)!);
  const dir = b.memory.read64(ctx.pasidDirPtr + (pasid >>> 6) * 8);
  const table = Number((dir >> 12n) << 12n);
  return decodePasidEntry(readWords(b.memory, table + (pasid & 63) * 64, 8)!);
}

describe("capabilities (CAP/ECAP)", () => {
  it("scalable: rid and pasid, maxPasidLog2 = min(device, ECAP.PSS + 1), raw registers", () => {
    const { backend: b } = fresh({ pasidBits: 10 });
    b.addDevice({ rid: DEV, pasidBits: 20 });
    b.addDevice({ rid: 0x10, pasidBits: 0 });
    const c = b.capabilities(DEV);
    expect(c.intents).toEqual(["rid", "pasid"]);
    expect(c.maxPasidLog2).toBe(10);
    expect(c.hwInfo).toEqual({ type: "intel-vtd", flags: 0, capReg: b.hw.capReg, ecapReg: b.hw.ecapReg });
    expect(c.formats).toEqual(["vtd-ss-4lvl", "vtd-ss-5lvl", "vtd-fs-4lvl", "vtd-fs-5lvl"]);
    expect(pageSizesLg2(c.pageSizeBitmap)).toEqual([12, 21, 30]);
    expect(c.features).toMatchObject({
      nesting: true,
      dirtyTracking: true,
      pasidPriv: true,
      atsNotSupported: true,
    });
    expect(b.capabilities(0x10).intents).toEqual(["rid"]);
    expect(b.capabilities(0x10).maxPasidLog2).toBe(0);
  });

  it("rid-all-pasids and emulated are refused with EOPNOTSUPP", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" });
    throwsCode(() => b.attach(DEV, Intent.ridAllPasids, d), "EOPNOTSUPP");
    throwsCode(() => b.attach(DEV, Intent.emulated, d), "EOPNOTSUPP");
  });

  it("legacy: rid only, second-stage formats only", () => {
    const { backend: b } = fresh({ mode: "legacy", sagaw: 0b0110 });
    b.addDevice({ rid: DEV, pasidBits: 20 });
    expect(b.capabilities(DEV).intents).toEqual(["rid"]);
    expect(b.capabilities(DEV).formats).toEqual(["vtd-ss-4lvl", "vtd-ss-3lvl"]);
    throwsCode(() => b.allocDomain({ type: "paging", format: "vtd-fs-4lvl" }), "EOPNOTSUPP");
  });

  it("the factory validates its config and exposes a schema", () => {
    const tm = fresh();
    expect(vtdBackend.name).toBe("vtd");
    expect((vtdBackend.configSchema as { properties: object }).properties).toHaveProperty("pasidBits");
    throwsCode(
      () => vtdBackend.create({ memory: tm.memory, tables: tm.tables, name: "x" }, { bogus: 1 }),
      "EINVAL",
    );
    throwsCode(
      () => vtdBackend.create({ memory: tm.memory, tables: tm.tables, name: "x" }, { haw: 99 }),
      "EINVAL",
    );
    throwsCode(
      () => vtdBackend.create({ memory: tm.memory, tables: tm.tables, name: "x" }, { sagaw: 1 }),
      "EINVAL",
    );
  });

  it("reserved regions: the interrupt range", () => {
    const { backend: b } = fresh();
    expect(b.reservedRegions(0)).toEqual([{ start: 0xfee00000, last: 0xfeefffff }]);
  });
});

describe("entries the driver writes", () => {
  it("addDevice: a present scalable context entry, PASID directory sized for the device, blocked", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    b.addDevice({ rid: 0x0109, pasidBits: 8 });
    const c = decodeScalableContextEntry(b.contextEntryWords(DEV)!);
    expect(c).toMatchObject({
      present: true,
      fpd: false,
      paside: true,
      pdts: 7,
      ridPasid: 0,
      reserved: false,
    });
    expect(decodeScalableContextEntry(b.contextEntryWords(0x0109)!).pdts).toBe(0);
    expect(xl(b, DEV, NO_PASID, 0)).toBe(-Fr.SM_PASID_DIR_NOT_PRESENT);
    const out = createTranslation();
    b.translate(DEV, NO_PASID, 0, R, out);
    expect(out.fault!.class).toBe("blocked");
  });

  it("rid attach of a second-stage domain writes the RID_PASID entry (PGTT 010b)", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" }) as VtdDomain;
    b.attach(DEV, Intent.rid, d);
    expect(pasidEntryOf(b, DEV, 0)).toMatchObject({
      present: true,
      pgtt: Pgtt.SECOND_STAGE,
      aw: 2,
      did: d.did,
      ssptptr: d.table!.root,
      sre: true,
      pwsnp: true,
      reserved: false,
    });
  });

  it("pasid attach of a first-stage 5-level domain writes PGTT 001b with FSPM 1", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging", format: "vtd-fs-5lvl" }) as VtdDomain;
    expect(b.attach(DEV, Intent.pasid(77), d)).toEqual({ pasid: 77 });
    expect(pasidEntryOf(b, DEV, 77)).toMatchObject({
      present: true,
      pgtt: Pgtt.FIRST_STAGE,
      fspm: 1,
      fsptptr: d.table!.root,
      did: d.did,
    });
    d.map(2 ** 52, 0x4000_0000, GIB, Perm.R | Perm.W);
    const out = createTranslation();
    expect(b.translate(DEV, 77, 2 ** 52 + 0x1234, W, out)).toBe(true);
    expect(out.pa).toBe(0x4000_1234);
    expect(out.sizeLg2).toBe(30);
  });

  it("legacy attach writes the context entry (TT 00b, or 01b for ATS devices)", () => {
    const { backend: b } = fresh({ mode: "legacy" });
    b.addDevice({ rid: 0x10, pasidBits: 0 });
    b.addDevice({ rid: 0x11, pasidBits: 0, ats: true });
    const d = b.allocDomain({ type: "paging" }) as VtdDomain;
    b.attach(0x10, Intent.rid, d);
    b.attach(0x11, Intent.rid, d);
    const [lo, hi] = b.contextEntryWords(0x10)!;
    expect(lo).toBe(BigInt(d.table!.root) | 1n);
    expect(hi).toBe(2n | (BigInt(d.did) << 8n));
    expect(b.contextEntryWords(0x11)![0]! & 0xcn).toBe(4n);
    const five = b.allocDomain({ type: "paging", format: "vtd-ss-5lvl" }) as VtdDomain;
    b.attach(0x10, Intent.rid, five);
    expect(b.contextEntryWords(0x10)![1]).toBe(3n | (BigInt(five.did) << 8n));
  });

  it("a first-stage or nested domain cannot be attached in legacy mode", () => {
    const s = fresh();
    const alien = s.backend.allocDomain({ type: "paging", format: "vtd-fs-4lvl" });
    const { backend: b } = fresh({ mode: "legacy" });
    b.addDevice({ rid: 0x10, pasidBits: 0 });
    throwsCode(() => b.attach(0x10, Intent.rid, alien), "EINVAL");
  });
});

describe("map / unmap / invalidate", () => {
  it("uses 2 MiB and 1 GiB pages where size and alignment allow, and frees emptied tables", () => {
    const { backend: b, tables } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" }) as VtdDomain;
    b.attach(DEV, Intent.rid, d);
    const before = tables.stats().blocks;
    d.map(GIB, 0, GIB + 0x20_0000 + 0x1000, Perm.R);
    const out = createTranslation();
    b.translate(DEV, NO_PASID, GIB + 0x123, R, out);
    expect(out.sizeLg2).toBe(30);
    b.translate(DEV, NO_PASID, 2 * GIB + 0x1000, R, out);
    expect(out.sizeLg2).toBe(21);
    b.translate(DEV, NO_PASID, 2 * GIB + 0x20_0000, R, out);
    expect(out.sizeLg2).toBe(12);
    expect(out.pa).toBe(GIB + 0x20_0000);
    throwsCode(() => d.unmap(GIB, 0x1000), "EINVAL");
    expect(d.unmap(GIB, GIB + 0x20_0000 + 0x1000)).toBe(GIB + 0x20_0000 + 0x1000);
    expect(tables.stats().blocks).toBe(before);
    expect(xl(b, DEV, NO_PASID, GIB)).toBe(-Fr.SS_NOT_PRESENT);
  });

  it("first stage: stale until the PASID-based IOTLB invalidation, fresh after", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging", format: "vtd-fs-4lvl" }) as VtdDomain;
    b.attach(DEV, Intent.pasid(3), d);
    d.map(0x10_0000, 0x50_0000, 0x1000, Perm.R | Perm.W);
    expect(xl(b, DEV, 3, 0x10_0010)).toBe(0x50_0010);
    rewriteLeaf(d, 0x10_0000, 0x60_0000);
    expect(xl(b, DEV, 3, 0x10_0010)).toBe(0x50_0010);
    const before = b.hw.descriptorCounts.get(DescType.PASID_IOTLB) ?? 0;
    b.flushRange(d, 0x10_0000, 0x1000);
    expect(b.hw.descriptorCounts.get(DescType.PASID_IOTLB)).toBe(before + 1);
    expect(xl(b, DEV, 3, 0x10_0010)).toBe(0x60_0010);
  });

  it("second stage, no PASID: stale through the micro-TLB until the page-selective IOTLB invalidation", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" }) as VtdDomain;
    b.attach(DEV, Intent.rid, d);
    d.map(0x10_0000, 0x50_0000, 0x2000, Perm.R | Perm.W);
    // Walk, IOTLB hit (copied into the micro-TLB), micro-TLB hit.
    for (let k = 0; k < 3; k++) expect(xl(b, DEV, NO_PASID, 0x10_0010)).toBe(0x50_0010);
    const walks = b.hw.counters().walks;
    rewriteLeaf(d, 0x10_0000, 0x60_0000);
    rewriteLeaf(d, 0x10_1000, 0x61_0000);
    expect(xl(b, DEV, NO_PASID, 0x10_0010)).toBe(0x50_0010);
    expect(b.hw.counters().walks).toBe(walks);
    // Invalidating the neighbour page leaves this one cached (and stale).
    b.flushRange(d, 0x10_1000, 0x1000);
    expect(xl(b, DEV, NO_PASID, 0x10_0010)).toBe(0x50_0010);
    expect(xl(b, DEV, NO_PASID, 0x10_1010)).toBe(0x61_0010);
    b.flushRange(d, 0x10_0000, 0x1000);
    expect(xl(b, DEV, NO_PASID, 0x10_0010)).toBe(0x60_0010);
    expect(b.hw.counters().walks).toBe(walks + 2);
  });

  it("unmap of a shared domain invalidates every attachment", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    b.addDevice({ rid: 0x10, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging", format: "vtd-fs-4lvl" });
    b.attach(DEV, Intent.pasid(3), d);
    b.attach(DEV, Intent.pasid(4), d);
    b.attach(0x10, Intent.rid, d);
    d.map(0x10_0000, 0x50_0000, 0x1000, Perm.R);
    for (const [rid, p] of [
      [DEV, 3],
      [DEV, 4],
      [0x10, NO_PASID],
    ] as const)
      expect(xl(b, rid, p, 0x10_0000)).toBe(0x50_0000);
    d.unmap(0x10_0000, 0x1000);
    for (const [rid, p] of [
      [DEV, 3],
      [DEV, 4],
      [0x10, NO_PASID],
    ] as const)
      expect(xl(b, rid, p, 0x10_0000)).toBe(-Fr.FS_NOT_PRESENT);
  });

  it("caching mode (CAP.CM): map invalidates too, since not-present entries may be cached", () => {
    for (const cachingMode of [false, true]) {
      const { backend: b } = fresh({ cachingMode });
      const d = b.allocDomain({ type: "paging" });
      const before = b.hw.descriptorCounts.get(DescType.IOTLB) ?? 0;
      d.map(0x1000, 0x2000, 0x1000, Perm.R);
      expect((b.hw.descriptorCounts.get(DescType.IOTLB) ?? 0) - before).toBe(cachingMode ? 1 : 0);
    }
  });

  it("ATS devices get device-TLB invalidations after unmap and detach", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: 0x0381, pasidBits: 8, ats: true });
    expect(decodeScalableContextEntry(b.contextEntryWords(0x0381)!).dte).toBe(true);
    const d = b.allocDomain({ type: "paging" });
    b.attach(0x0381, Intent.rid, d);
    d.map(0, 0x1000, 0x1000, Perm.R);
    const before = b.hw.descriptorCounts.get(DescType.DEV_TLB) ?? 0;
    d.unmap(0, 0x1000);
    expect(b.hw.descriptorCounts.get(DescType.DEV_TLB)).toBe(before + 1);
    b.detach(0x0381, Intent.rid);
    expect(b.hw.descriptorCounts.get(DescType.DEV_TLB)).toBe(before + 2);
    // PASID attachments use the PASID-based device-TLB invalidation.
    b.attach(0x0381, Intent.pasid(3), d);
    d.map(0, 0x1000, 0x1000, Perm.R);
    d.unmap(0, 0x1000);
    expect(b.hw.descriptorCounts.get(DescType.PASID_DEV_TLB)).toBe(1);
    expect(b.capabilities(0x0381).features.atsNotSupported).toBe(false);
  });

  it("psiRange gives the smallest aligned block covering a range", () => {
    expect(psiRange(0x1000, 0x1000)).toEqual({ addr: 0x1000, am: 0 });
    expect(psiRange(0x1000, 0x2000)).toEqual({ addr: 0, am: 2 });
    expect(psiRange(0x20_0000, 0x20_0000)).toEqual({ addr: 0x20_0000, am: 9 });
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), fc.integer({ min: 1, max: 2 ** 32 }), (page, length) => {
        const iova = page * 4096;
        const { addr, am } = psiRange(iova, length);
        const size = 4096 * 2 ** am;
        expect(addr % size).toBe(0);
        expect(addr <= iova && iova + length <= addr + size).toBe(true);
        // Minimal: the aligned half-size block around iova does not cover the range.
        if (am > 0)
          expect(Math.floor(iova / (size / 2)) === Math.floor((iova + length - 1) / (size / 2))).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it("map refuses no-permission mappings, targets beyond HAW and ranges outside the aperture", () => {
    const { backend: b } = fresh({ haw: 46 });
    const d = b.allocDomain({ type: "paging" });
    throwsCode(() => d.map(0, 0x1000, 0x1000, 0), "EINVAL");
    throwsCode(() => d.map(0, 2 ** 46, 0x1000, Perm.R), "EINVAL");
    throwsCode(() => d.map(2 ** 48, 0, 0x1000, Perm.R), "EINVAL");
    const fs = b.allocDomain({ type: "paging", format: "vtd-fs-4lvl" });
    expect(fs.aperture.last).toBe(2 ** 47 - 1);
  });
});

describe("nested domains (IOMMU_HWPT_DATA_VTD_S1)", () => {
  function nestedSetup() {
    const t = fresh();
    const b = t.backend;
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const parent = b.allocDomain({ type: "paging", flags: { nestParent: true } }) as VtdDomain;
    // Guest RAM: GPA [0, 1 GiB) -> HPA [1 GiB, 2 GiB).
    parent.map(0, GIB, GIB, Perm.R | Perm.W);
    // The guest's first-stage tables at GPA 0x10000.. (HPA + 1 GiB), mapping IOVA 0x40_0000 -> GPA 0x80_0000.
    const g = (gpa: number): number => gpa + GIB;
    const fsRoot = 0x1_0000;
    const tbl = [0x1_1000, 0x1_2000, 0x1_3000];
    const put = (gpa: number, v: bigint): void => t.memory.write64(g(gpa), v);
    const tab = (addr: number) => encodeFsEntry({ ...FS0, p: true, rw: true, us: true, a: true, addr });
    put(fsRoot, tab(tbl[0]!));
    put(tbl[0]!, tab(tbl[1]!));
    put(tbl[1]! + 2 * 8, tab(tbl[2]!));
    put(tbl[2]!, encodeFsEntry({ ...FS0, p: true, rw: true, us: true, a: true, d: true, addr: 0x80_0000 }));
    const nested = b.allocDomain({
      type: "nested",
      parent,
      data: { pgtblAddr: `0x${fsRoot.toString(16)}`, addrWidth: 48, flags: 0 },
    }) as VtdDomain;
    return { ...t, b, parent, nested, put, tbl };
  }

  it("translates IOVA -> GPA -> HPA through the user's table over the parent", () => {
    const { b, nested } = nestedSetup();
    b.attach(DEV, Intent.pasid(9), nested);
    expect(pasidEntryOf(b, DEV, 9)).toMatchObject({ pgtt: Pgtt.NESTED, fsptptr: 0x1_0000, sre: false });
    expect(xl(b, DEV, 9, 0x40_0123, W)).toBe(GIB + 0x80_0123);
    expect(nested.iovaToPhys(0x40_0123)).toBe(GIB + 0x80_0123);
    expect(nested.iovaToPhys(0x50_0000)).toBe(-1);
  });

  it("user invalidation: stale until invalidate(), then fresh; counts handled entries", () => {
    const { b, nested, put, tbl } = nestedSetup();
    b.attach(DEV, Intent.rid, nested);
    expect(xl(b, DEV, NO_PASID, 0x40_0000)).toBe(GIB + 0x80_0000);
    put(tbl[2]!, encodeFsEntry({ ...FS0, p: true, rw: true, us: true, a: true, d: true, addr: 0x90_0000 }));
    expect(xl(b, DEV, NO_PASID, 0x40_0000)).toBe(GIB + 0x80_0000);
    expect(nested.invalidate!([{ addr: "0x400000", npages: 1, flags: 1 }])).toBe(1);
    expect(xl(b, DEV, NO_PASID, 0x40_0000)).toBe(GIB + 0x90_0000);
    expect(
      nested.invalidate!([
        { addr: 0, npages: "0xffffffffffffffff" },
        { addr: 0, npages: 0 },
      ]),
    ).toBe(2);
  });

  it("a bad invalidation entry is EINVAL with details.handled", () => {
    const { nested } = nestedSetup();
    const e = throwsCode(
      () =>
        nested.invalidate!([
          { addr: 0, npages: 1 },
          { addr: 0x123, npages: 1 },
        ]),
      "EINVAL",
    );
    expect(e.details.handled).toBe(1);
    expect(
      throwsCode(() => nested.invalidate!([{ addr: 0, npages: 1, flags: 2 }]), "EINVAL").details.handled,
    ).toBe(0);
    expect(
      throwsCode(() => nested.invalidate!([{ addr: 0x1000, npages: "0xffffffffffffffff" }]), "EINVAL").details
        .handled,
    ).toBe(0);
    expect(throwsCode(() => nested.invalidate!([null]), "EINVAL").details.handled).toBe(0);
  });

  it("parent unmap invalidates the nested translations built on it", () => {
    const { b, parent, nested } = nestedSetup();
    b.attach(DEV, Intent.pasid(9), nested);
    expect(xl(b, DEV, 9, 0x40_0000)).toBe(GIB + 0x80_0000);
    // The parent's 1 GiB leaf cannot be split: unmap it all and remap elsewhere.
    expect(parent.unmap(0, GIB)).toBe(GIB);
    expect(xl(b, DEV, 9, 0x40_0000)).toBe(-Fr.SS_NOT_PRESENT);
  });

  it("checks the vendor data and the parent", () => {
    const { b, parent } = nestedSetup();
    const plain = b.allocDomain({ type: "paging" });
    throwsCode(
      () => b.allocDomain({ type: "nested", parent: plain, data: { pgtblAddr: 0, addrWidth: 48 } }),
      "EINVAL",
    );
    throwsCode(
      () => b.allocDomain({ type: "nested", parent, data: { pgtblAddr: 0, addrWidth: 39 } }),
      "EINVAL",
    );
    throwsCode(
      () => b.allocDomain({ type: "nested", parent, data: { pgtblAddr: 0x123, addrWidth: 48 } }),
      "EINVAL",
    );
    throwsCode(
      () => b.allocDomain({ type: "nested", parent, data: { pgtblAddr: 0, addrWidth: 48, flags: 8 } }),
      "EINVAL",
    );
    throwsCode(() => b.allocDomain({ type: "nested", parent, data: null }), "EINVAL");
    throwsCode(
      () => b.allocDomain({ type: "paging", format: "vtd-fs-4lvl", flags: { nestParent: true } }),
      "EOPNOTSUPP",
    );
    throwsCode(() => parent.free(), "EBUSY");
  });

  it("SRE / WPE flags reach the PASID entry and govern supervisor requests", () => {
    const { b, parent } = nestedSetup();
    const sup = b.allocDomain({
      type: "nested",
      parent,
      data: { pgtblAddr: 0x1_0000, addrWidth: 48, flags: 1 | 4 },
    });
    b.attach(DEV, Intent.pasid(10), sup);
    expect(pasidEntryOf(b, DEV, 10)).toMatchObject({ sre: true, wpe: true, eafe: false });
    expect(xl(b, DEV, 10, 0x40_0000, R | Access.PRIV)).toBe(GIB + 0x80_0000);
    const user = b.allocDomain({ type: "nested", parent, data: { pgtblAddr: 0x1_0000, addrWidth: 48 } });
    b.attach(DEV, Intent.pasid(11), user);
    expect(xl(b, DEV, 11, 0x40_0000, R | Access.PRIV)).toBe(-Fr.SM_SRE_CLEAR);
  });
});

describe("identity, blocked, detach and replace", () => {
  it("identity domains pass through (legacy TT 10b, scalable PGTT 100b)", () => {
    for (const mode of ["legacy", "scalable"] as const) {
      const { backend: b } = fresh({ mode });
      b.addDevice({ rid: 0x10, pasidBits: 0 });
      b.attach(0x10, Intent.rid, b.allocDomain({ type: "identity" }));
      expect(xl(b, 0x10, NO_PASID, 0x1234_5678, W)).toBe(0x1234_5678);
    }
  });

  it("a blocked domain or a detach blocks (legacy 0x2, scalable 0x59), class blocked", () => {
    for (const [mode, fr] of [
      ["legacy", Fr.CONTEXT_NOT_PRESENT],
      ["scalable", Fr.SM_PASID_NOT_PRESENT],
    ] as const) {
      const { backend: b } = fresh({ mode });
      b.addDevice({ rid: 0x10, pasidBits: 0 });
      const d = b.allocDomain({ type: "paging" });
      d.map(0, 0x1000, 0x1000, Perm.R);
      b.attach(0x10, Intent.rid, d);
      expect(xl(b, 0x10, NO_PASID, 0)).toBe(0x1000);
      b.attach(0x10, Intent.rid, b.allocDomain({ type: "blocked" }));
      expect(b.attached(0x10, Intent.rid)).toBe(null);
      expect(xl(b, 0x10, NO_PASID, 0)).toBe(-fr);
      b.attach(0x10, Intent.rid, d);
      b.detach(0x10, Intent.rid);
      const out = createTranslation();
      b.translate(0x10, NO_PASID, 0, R, out);
      expect(out.fault!.class).toBe("blocked");
      expect(out.fault!.vendor.code).toBe(fr);
    }
  });

  it("replace switches the DID in the PASID entry and the old translations are gone", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const a = b.allocDomain({ type: "paging" }) as VtdDomain;
    const c = b.allocDomain({ type: "paging", format: "vtd-fs-4lvl" }) as VtdDomain;
    a.map(0, 0x1000, 0x1000, Perm.R);
    c.map(0, 0x2000, 0x1000, Perm.R);
    b.attach(DEV, Intent.pasid(1), a);
    expect(xl(b, DEV, 1, 0)).toBe(0x1000);
    b.attach(DEV, Intent.pasid(1), c);
    expect(pasidEntryOf(b, DEV, 1).did).toBe(c.did);
    expect(xl(b, DEV, 1, 0)).toBe(0x2000);
    expect([...a.users]).toEqual([]);
    throwsCode(() => b.attach(DEV, Intent.pasid(0), a), "EINVAL");
  });

  it("removeDevice: EBUSY while attached, then frees its PASID structures", () => {
    const { backend: b, tables } = fresh();
    const base = tables.stats().blocks;
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" });
    b.attach(DEV, Intent.pasid(700), d);
    throwsCode(() => b.removeDevice(DEV), "EBUSY");
    b.detach(DEV, Intent.pasid(700));
    b.removeDevice(DEV);
    d.free();
    // The context table for bus 1 stays (shared per bus).
    expect(tables.stats().blocks).toBe(base + 1);
    throwsCode(() => b.capabilities(DEV), "ENOENT");
    throwsCode(() => b.addDevice({ rid: 0x1_0000, pasidBits: 0 }), "EINVAL");
    throwsCode(() => b.addDevice({ rid: 5, pasidBits: 21 }), "EINVAL");
  });

  it("the driver drains fault records, so repeated faults of one device are all recorded", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const out = createTranslation();
    for (let i = 0; i < 20; i++) {
      b.translate(DEV, NO_PASID, i * 4096, R, out);
      expect(out.fault!.recorded).toBe(true);
    }
    expect(b.faultLog).toHaveLength(20);
    expect(decodeFaultRecord(b.faultLog[19]!)).toMatchObject({ sid: DEV, fi: 19 * 4096, fr: 0x51 });
  });
});

describe("atomicity under allocation failure (fail_nth)", () => {
  function sweep(
    op: (t: ReturnType<typeof fresh>) => void,
    prepare: (t: ReturnType<typeof fresh>) => void,
  ): number {
    for (let n = 1; n < 50; n++) {
      const t = fresh();
      prepare(t);
      const snap = t.memory.snapshot();
      const blocks = t.tables.stats().blocks;
      t.memory.failNth.arm(n);
      try {
        op(t);
        t.memory.failNth.disarm();
        return n;
      } catch (e) {
        expect(isIommuError(e, "ENOMEM")).toBe(true);
        expect(PhysicalMemory.sameContents(snap, t.memory.snapshot())).toBe(true);
        expect(t.tables.stats().blocks).toBe(blocks);
      }
    }
    throw new Error("never succeeded");
  }

  it("addDevice", () => {
    expect(
      sweep(
        (t) => t.backend.addDevice({ rid: DEV, pasidBits: 20 }),
        () => {},
      ),
    ).toBeGreaterThan(1);
  });

  it("attach to a new PASID table and map across new tables", () => {
    let dom: Domain | null = null;
    const prep = (t: ReturnType<typeof fresh>): void => {
      t.backend.addDevice({ rid: DEV, pasidBits: 20 });
      dom = t.backend.allocDomain({ type: "paging" });
    };
    expect(sweep((t) => t.backend.attach(DEV, Intent.pasid(900), dom!), prep)).toBe(2);
    expect(sweep(() => dom!.map(2 ** 40, 0, 0x3000, Perm.R), prep)).toBe(4);
  });
});

describe("fromRegisters: the hardware model over someone else's memory image", () => {
  it("translates a driver-built image from register values alone", () => {
    const { backend: b, memory } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0x7000, 0x9000, 0x1000, Perm.R);
    b.attach(DEV, Intent.rid, d);
    const regs = {
      RTADDR: b.hw.readRegister(Reg.RTADDR),
      GSTS: b.hw.readNamed("GSTS"),
      CAP: b.hw.capReg,
      ECAP: b.hw.ecapReg,
    };
    const snap = vtdBackend.fromRegisters!(memory, regs) as VtdBackend;
    expect(xl(snap, DEV, NO_PASID, 0x7004)).toBe(0x9004);
    expect(xl(snap, DEV, NO_PASID, 0x8000)).toBe(-Fr.SS_NOT_PRESENT);
    expect(snap.capabilities(DEV).intents).toEqual(["rid", "pasid"]);
    throwsCode(() => snap.addDevice({ rid: 1, pasidBits: 0 }), "EOPNOTSUPP");
    throwsCode(() => snap.allocDomain({ type: "paging" }), "EOPNOTSUPP");
    expect(vtdBackend.registerDefaults).toHaveProperty("RTADDR", 0n);
    throwsCode(() => vtdFromRegisters(memory, { BOGUS: 1n }), "EINVAL");
  });

  it("missing GSTS means translation disabled", () => {
    const { memory } = fresh();
    const snap = vtdFromRegisters(memory, {});
    expect(xl(snap, 1, NO_PASID, 0x1234)).toBe(0x1234);
  });

  it("translateBig: upper-half canonical first-stage addresses and non-canonical ones", () => {
    const r = rig();
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root });
    // 0xffff_8000_0000_0000 is PML4 index 256, the first upper-half slot.
    r.fsMap(root, 4, 2 ** 47, { addr: 0x5000 });
    const snap = vtdFromRegisters(r.memory, {
      RTADDR: r.hw.readRegister(Reg.RTADDR),
      GSTS: r.hw.readNamed("GSTS"),
      CAP: r.hw.capReg,
      ECAP: r.hw.ecapReg,
      HAW: 48n,
    });
    const ok = snap.translateBig(SID, 5, 0xffff_8000_0000_0abcn, R);
    expect(ok).toEqual({ ok: true, pa: 0x5abc, perm: Perm.R | Perm.W | Perm.X, sizeLg2: 12 });
    const bad = snap.translateBig(SID, 5, 0x0010_0000_0000_0000n, R);
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.fault.vendor.code).toBe(Fr.FS_NON_CANONICAL);
    const small = snap.translateBig(SID, 5, 2n ** 47n + 0xabcn, R);
    expect(small.ok).toBe(false);
  });
});

describe("addresses at or above 2^53", () => {
  it("5-level first stage: lower-half canonical addresses above 2^53 translate, upper half too", () => {
    const r = rig();
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root, fspm: 1 });
    r.fsMap(root, 5, 2 ** 54, { addr: 0x6000 });
    r.fsMap(root, 5, 2 ** 56, { addr: 0x7000 });
    const snap = vtdFromRegisters(r.memory, {
      RTADDR: r.hw.readRegister(Reg.RTADDR),
      GSTS: r.hw.readNamed("GSTS"),
      CAP: r.hw.capReg,
      ECAP: r.hw.ecapReg,
      HAW: 48n,
    });
    expect(snap.translateBig(SID, 5, 2n ** 54n + 0x12n, R)).toMatchObject({ ok: true, pa: 0x6012 });
    expect(snap.translateBig(SID, 5, 0xff00_0000_0000_0034n, R)).toMatchObject({ ok: true, pa: 0x7034 });
    const bad = snap.translateBig(SID, 5, 0x0100_0000_0000_0000n, R);
    expect(bad.ok ? null : bad.fault.vendor.code).toBe(Fr.FS_NON_CANONICAL);
    const steps = snap.explain(SID, 5, 0xff00_0000_0000_0034n, R);
    expect(steps.at(-1)!.note).toBe("pa 0x7034 size 2^12");
    expect(steps.some((s) => s.note.includes("upper half"))).toBe(true);
  });

  it("second stage 5-level walks addresses above 2^53; 4-level faults them (0x83)", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const five = b.allocDomain({ type: "paging", format: "vtd-ss-5lvl" }) as VtdDomain;
    b.attach(DEV, Intent.pasid(1), five);
    five.table!.map(0, 0x8000, 0x1000, Perm.R);
    const four = b.allocDomain({ type: "paging" });
    b.attach(DEV, Intent.pasid(2), four);
    const out = b.translateBig(DEV, 2, 2n ** 54n, R);
    expect(out.ok ? null : out.fault.vendor.code).toBe(Fr.SM_BEYOND_AGAW);
    const miss = b.translateBig(DEV, 1, 2n ** 54n, R);
    expect(miss.ok ? null : miss.fault.vendor.code).toBe(Fr.SS_NOT_PRESENT);
    expect(b.translateBig(DEV, 1, 0x10n, R)).toMatchObject({ ok: true, pa: 0x8010 });
  });

  it("with translation disabled an address above 2^53 reaches no memory", () => {
    const { memory } = fresh();
    const snap = vtdFromRegisters(memory, {});
    const out = snap.translateBig(1, NO_PASID, 2n ** 60n, R);
    expect(out.ok ? null : out.fault.class).toBe("address-size");
  });
});

describe("explain and dump", () => {
  it("explain lists every structure read and changes no cache, counter or record", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0x7000, 0x9000, 0x1000, Perm.R);
    b.attach(DEV, Intent.rid, d);
    const before = b.counters();
    const steps = b.explain(DEV, NO_PASID, 0x7008n, R);
    expect(steps.map((s) => s.what)).toEqual([
      "root entry",
      "context entry",
      "PASID directory entry",
      "PASID table entry",
      "SS L3",
      "SS L2",
      "SS L1",
      "SS L0",
      "translation",
    ]);
    expect(steps.at(-1)!.note).toBe("pa 0x9008 size 2^12");
    expect(b.counters()).toEqual(before);
    const miss = b.explain(DEV, NO_PASID, 0x8000n, W);
    expect(miss.at(-1)!.note).toMatch(/^fault 0x79/);
    expect(b.hw.pendingFaults()).toHaveLength(0);
  });

  it("legacy: explain and dump show the context entry and the table", () => {
    const { backend: b } = fresh({ mode: "legacy" });
    b.addDevice({ rid: 0x10, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0x7000, 0x9000, 0x1000, Perm.R);
    b.attach(0x10, Intent.rid, d);
    expect(b.explain(0x10, NO_PASID, 0x7000n, R).map((s) => s.what)).toEqual([
      "root entry",
      "context entry",
      "SS L3",
      "SS L2",
      "SS L1",
      "SS L0",
      "translation",
    ]);
    const dump = b.dump() as {
      mode: string;
      devices: Array<{ sid: string; translation: Array<{ IOVA_PFN: string }> }>;
    };
    expect(dump.mode).toBe("legacy");
    expect(dump.devices.map((x) => x.sid)).toEqual(["00:02.0"]);
    expect(dump.devices[0]!.translation.map((x) => x.IOVA_PFN)).toEqual(["0x7"]);
  });

  it("dump lists devices, their entries and the leaves of each table (JSON-able)", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0x7000, 0x9000, 0x1000, Perm.R);
    d.map(0x20_0000, 0x40_0000, 0x20_0000, Perm.R);
    b.attach(DEV, Intent.rid, d);
    const dump = JSON.parse(JSON.stringify(b.dump(DEV))) as {
      mode: string;
      devices: Array<{
        sid: string;
        pasids: Array<{ pasid: number; translation: Array<{ IOVA_PFN: string; size: string }> }>;
      }>;
    };
    expect(dump.mode).toBe("scalable");
    expect(dump.devices.map((x) => x.sid)).toEqual(["01:01.0"]);
    const rows = dump.devices[0]!.pasids[0]!.translation;
    expect(rows.map((x) => [x.IOVA_PFN, x.size])).toEqual([
      ["0x7", "2^12"],
      ["0x200", "2^21"],
    ]);
  });
});

describe("dirty tracking (second-stage A/D)", () => {
  it("SSADE in the PASID entry; writes set D; readDirty reports and clears", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging", flags: { dirtyTracking: true } }) as VtdDomain;
    d.map(0, 0x10_0000, 0x4000, Perm.R | Perm.W);
    b.attach(DEV, Intent.rid, d);
    d.setDirtyTracking!(true);
    expect(pasidEntryOf(b, DEV, 0).ssade).toBe(true);
    expect(xl(b, DEV, NO_PASID, 0x1000, R)).toBe(0x10_1000);
    expect(xl(b, DEV, NO_PASID, 0x1000, W)).toBe(0x10_1000);
    expect(xl(b, DEV, NO_PASID, 0x3000, W)).toBe(0x10_3000);
    const bm = new Uint8Array(1);
    d.readDirty!(0, 0x4000, 12, bm, false);
    expect(bm[0]).toBe(0b1010);
    const again = new Uint8Array(1);
    d.readDirty!(0, 0x4000, 12, again, false);
    expect(again[0]).toBe(0);
    // After clearing, the next write walks again and sets D.
    expect(xl(b, DEV, NO_PASID, 0x1000, W)).toBe(0x10_1000);
    d.readDirty!(0, 0x4000, 12, again, true);
    expect(again[0]).toBe(0b0010);
    d.setDirtyTracking!(false);
    expect(pasidEntryOf(b, DEV, 0).ssade).toBe(false);
    throwsCode(
      () => b.allocDomain({ type: "paging", format: "vtd-fs-4lvl", flags: { dirtyTracking: true } }),
      "EOPNOTSUPP",
    );
  });
});
