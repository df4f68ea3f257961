/**
 * Issue 15 on the driver half and the host operations: each test is built from the spec
 * section or Linux function named in it, and failed before its fix.
 */
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
import { describe, expect, it } from "vitest";
import type { SmmuPagingDomain, SmmuV3Config } from "../src/index.ts";
import { type SmmuV3Backend, smmuv3Backend } from "../src/index.ts";

const R = Access.READ;

function make(config: SmmuV3Config = {}) {
  const { memory, tables } = createTestMemory(2 ** 32, 2 ** 28);
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

describe("OAS 52 without LPA2: a 4K/16K descriptor holds OA[47:0] only (5.4 IPS, 5.2 S2PS)", () => {
  for (const format of ["arm-lpae-s1-4k", "arm-lpae-s1-16k", "arm-lpae-s2-4k", "arm-lpae-s2-16k"] as const) {
    it(`${format}: a PA at 2^48 is ERANGE (io-pgtable-arm arm_lpae_map), nothing changed`, () => {
      const { b, memory } = make({ oas: 52 });
      const d = b.allocDomain({ type: "paging", format }) as SmmuPagingDomain;
      const page = format.endsWith("16k") ? 0x4000 : 0x1000;
      const snap = memory.snapshot();
      expect(code(() => d.map(0x10_0000 - (0x10_0000 % page), 2 ** 48, page, Perm.R))).toBe("ERANGE");
      expect(code(() => d.map(0, 2 ** 48 - page, 2 * page, Perm.R))).toBe("ERANGE");
      expect(PhysicalMemory.sameContents(snap, memory.snapshot())).toBe(true);
      d.map(0, 2 ** 48 - page, page, Perm.R); // the last page below 2^48 is fine
      expect(d.iovaToPhys(0)).toBe(2 ** 48 - page);
    });
  }

  it("arm-lpae-s1-64k: OA[51:48] in [15:12], so 2^51 maps and translates exactly", () => {
    const { b, x } = make({ oas: 52 });
    b.addDevice({ rid: 3, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging", format: "arm-lpae-s1-64k" });
    b.attach(3, Intent.rid, d);
    d.map(0x1_0000, 2 ** 51 + 0x3_0000, 0x1_0000, Perm.R);
    expect(x(3, -1, 0x1_0123, R)).toEqual({ ok: true, pa: 2 ** 51 + 0x3_0123, perm: Perm.R, sizeLg2: 16 });
  });
});

describe("the driver consumes the event queue as arm_smmu_evtq_thread does", () => {
  it("more than 2^LOG2SIZE faults are all recorded and drained in order; EVENTQ_CONS follows PROD", () => {
    const { b, x } = make({ eventQueueLog2: 3 });
    const n = 8 * 5 + 3;
    for (let i = 0; i < n; i++) {
      const t = x(0x4000 + i, -1, 0x1000, R); // no STE: C_BAD_STREAMID, recorded (CR2.RECINVSID)
      expect(t.ok === false && t.fault.recorded, `fault ${i}`).toBe(true);
    }
    const ev = b.drainEvents();
    expect(ev.map((e) => e.streamId)).toEqual(Array.from({ length: n }, (_, i) => 0x4000 + i));
    expect(ev.every((e) => e.id === 0x02)).toBe(true);
    expect(b.hw.readRegister("EVENTQ_CONS") & 0xfn).toBe(b.hw.readRegister("EVENTQ_PROD") & 0xfn);
    expect(b.hw.eventsDropped).toBe(0);
    expect(b.drainEvents()).toEqual([]);
  });
});

describe("a command-queue error fails only its operation, which changes nothing (7.1, arm_smmu_cmdq_skip_err)", () => {
  it("attach whose commands abort (CERROR_ABT) is EIO with STE and CD as before; after recovery attach works", () => {
    const { b, x, memory } = make();
    b.addDevice({ rid: 0x21, pasidBits: 8 });
    const d1 = b.allocDomain({ type: "paging" });
    const d2 = b.allocDomain({ type: "paging" });
    d1.map(0x1000, 0x8000, 0x1000, Perm.R);
    d2.map(0x1000, 0x9000, 0x1000, Perm.R);
    b.attach(0x21, Intent.rid, d1);
    expect(x(0x21, -1, 0x1000, R)).toMatchObject({ ok: true, pa: 0x8000 });
    const snap = memory.snapshot();
    // The SMMU now fetches commands from an address outside RAM: every command aborts.
    const base = b.hw.readRegister("CMDQ_BASE");
    b.hw.writeRegister("CMDQ_BASE", (base & 0x1fn) | (2n ** 40n));
    expect(code(() => b.attach(0x21, Intent.rid, d2))).toBe("EIO");
    expect(b.attached(0x21, Intent.rid)).toBe(d1);
    expect(Number((b.hw.readRegister("CMDQ_CONS") >> 24n) & 0x7fn)).toBe(2); // CERROR_ABT
    // Tables as before: every page except the command queue's (the driver's own ring).
    const cmdq = Number(base & 0x000f_ffff_ffff_ffe0n);
    const cmdqPages = new Set(Array.from({ length: 16 }, (_, i) => Math.floor(cmdq / 4096) + i));
    const after = memory.snapshot();
    for (const [page, bytes] of snap)
      if (!cmdqPages.has(page)) expect(after.get(page), `page ${page}`).toEqual(bytes);
    expect(x(0x21, -1, 0x1000, R)).toMatchObject({ ok: true, pa: 0x8000 });
    // The fetch works again: the next operation recovers the queue (retry, GERRORN) and succeeds.
    b.hw.writeRegister("CMDQ_BASE", base);
    b.attach(0x21, Intent.rid, d2);
    expect(x(0x21, -1, 0x1000, R)).toMatchObject({ ok: true, pa: 0x9000 });
    expect(b.hw.readRegister("GERROR")).toBe(b.hw.readRegister("GERRORN"));
  });

  it("CMDQ_CONS.ERR reads only CERROR codes (7.1): software writes move RD only", () => {
    const { b } = make();
    b.hw.writeRegister("CR0", 0n);
    b.hw.writeRegister("CMDQ_CONS", 0xffff_ffffn);
    const cons = b.hw.readRegister("CMDQ_CONS");
    expect(cons).toBe(0xf_ffffn);
    expect(Number(b.hw.mmioRead(0x9c, 4))).toBeGreaterThanOrEqual(0);
  });
});

describe("without IDR3.RIL the driver issues no range TLBI (4.4.1: TG != 0 is ILL)", () => {
  it("unmap invalidates page by page (and by ASID past 512 pages); no command error, no stale entry", () => {
    const { b, x } = make();
    (b.hw as { ril: boolean }).ril = false; // an SMMU whose IDR3.RIL reads 0
    b.addDevice({ rid: 0x31, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" });
    b.attach(0x31, Intent.rid, d);
    d.map(0x10_0000, 0x20_0000, 0x4000, Perm.R);
    expect(x(0x31, -1, 0x10_3008, R)).toMatchObject({ ok: true, pa: 0x20_3008 });
    expect(d.unmap(0x10_0000, 0x4000)).toBe(0x4000);
    expect(x(0x31, -1, 0x10_3008, R)).toMatchObject({
      ok: false,
      fault: { vendor: { name: "F_TRANSLATION" } },
    });
    expect(b.hw.readRegister("GERROR")).toBe(b.hw.readRegister("GERRORN"));
    d.map(0x4000_0000, 0x4000_0000, 0x40_0000, Perm.R); // 1024 pages: TLBI_NH_ASID
    expect(x(0x31, -1, 0x4030_0000, R)).toMatchObject({ ok: true, pa: 0x4030_0000 });
    d.unmap(0x4000_0000, 0x40_0000);
    expect(x(0x31, -1, 0x4030_0000, R)).toMatchObject({ ok: false });
    expect(b.hw.readRegister("GERROR")).toBe(b.hw.readRegister("GERRORN"));
  });
});
