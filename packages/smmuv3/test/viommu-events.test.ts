/**
 * Guest events through the vIOMMU (Linux 6.15 arm_smmu_handle_event +
 * arm_vmaster_report_event): records of handled IDs, not at stage 2, of a device whose
 * nested attach found a vDEVICE reach the "arm-smmuv3" event sink as the guest reads
 * them (32 bytes, EVTQ_0_SID [63:32] = the vSID); everything else only reaches the log.
 */
import type { ViommuEvent } from "@iommu-kit/core";
import { Access, Intent, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { bytesToWords, decodeEvent, EventId, wordsToBytes } from "../src/index.ts";
import { code, guest, vrig } from "./viommu-rig.ts";

const R = Access.READ;
const W = Access.WRITE;

function setup() {
  const r = vrig();
  const g = guest(r);
  const got: ViommuEvent[] = [];
  g.viommu.setEventSink("arm-smmuv3", (e) => got.push(e));
  r.b.drainEvents();
  return { ...r, ...g, got };
}

/** The physical record with bytes 4..7 (EVTQ_0_SID) replaced by `vsid`, little-endian. */
function withVsid(raw: Uint8Array, vsid: number): Uint8Array {
  const out = raw.slice();
  new DataView(out.buffer).setUint32(4, vsid, true);
  return out;
}

describe("arm_vmaster_report_event", () => {
  it("a stage-1 F_TRANSLATION of a vDEVICE: the guest's record is the physical one with the vSID", () => {
    const { x, got, b } = setup();
    const r = x(8, 1, 0x5000, W); // guest stage 1 has no leaf for IOVA 0x5000
    expect(r).toMatchObject({ ok: false, fault: { recorded: true, vendor: { name: "F_TRANSLATION" } } });
    const raw = r.ok ? new Uint8Array() : r.fault.vendor.raw!;
    expect(got).toHaveLength(1);
    expect(got[0]!.type).toBe("arm-smmuv3");
    expect(got[0]!.data).toEqual(withVsid(raw, 0x99));
    // Byte by byte: ID 0x10, SSV [11], SubstreamID 1 [31:12], StreamID 0x99 [63:32]; RnW = 0 (write).
    expect([...got[0]!.data.slice(0, 8)]).toEqual([0x10, 0x18, 0, 0, 0x99, 0, 0, 0]);
    expect(decodeEvent(bytesToWords(got[0]!.data))).toMatchObject({
      id: EventId.F_TRANSLATION,
      streamId: 0x99,
      ssv: 1,
      substreamId: 1,
      s2: 0,
      rnw: 0,
      stall: 0,
      inputAddr: 0x5000n,
    });
    // The driver's log keeps the physical record.
    expect(b.drainEvents()).toMatchObject([{ id: EventId.F_TRANSLATION, streamId: 8 }]);
  });

  it("C_BAD_STE and C_BAD_CD of the guest's structures are forwarded too (exact 32 bytes)", () => {
    const { b, x, got, viommu } = setup();
    // CD 2 of the guest's table is all zero: C_BAD_CD for SubstreamID 2.
    expect(x(8, 2, 0x1000, R)).toMatchObject({ ok: false, fault: { vendor: { name: "C_BAD_CD" } } });
    const badCd = new Uint8Array(32);
    badCd.set([EventId.C_BAD_CD, 0x28, 0, 0, 0x99, 0, 0, 0]); // SSV, SubstreamID 2
    expect(got.map((e) => e.data)).toEqual([badCd]);
    // S1CDMax 31 > SSIDSIZE 20: the physical STE is ILLEGAL (C_BAD_STE), reported with the vSID.
    const d = viommu.allocNested({ ste: [1n | (5n << 1n) | 0x1000n | (31n << 59n), 0n] }, {});
    b.attach(8, Intent.ridAllPasids, d);
    got.length = 0;
    expect(x(8, -1, 0x1000, R)).toMatchObject({ ok: false, fault: { vendor: { name: "C_BAD_STE" } } });
    expect(got.map((e) => e.data)).toEqual([
      wordsToBytes([BigInt(EventId.C_BAD_STE) | (0x99n << 32n), 0n, 0n, 0n]),
    ]);
  });

  it("stage-2 faults (S2 = 1), devices without a vmaster and the unhandled IDs only reach the log", () => {
    const { b, x, got, parent, viommu } = setup();
    parent.unmap(0x40_0000, 0x40_0000); // IPA 0x50_0000 (the guest's page) is gone
    expect(x(8, 1, 0x1008, R)).toMatchObject({
      ok: false,
      fault: { vendor: { name: "F_TRANSLATION", fields: { S2: 1 } } },
    });
    expect(got).toEqual([]);
    // A bypass vSTE attached without a vDEVICE has no vmaster: nothing reaches the vIOMMU.
    b.addDevice({ rid: 9, pasidBits: 0 });
    b.attach(9, Intent.ridAllPasids, viommu.allocNested({ ste: [9n, 0n] }, {}));
    expect(x(9, -1, 0x40_0000, R)).toMatchObject({ ok: false, fault: { vendor: { fields: { S2: 1 } } } });
    // A plain stage-1 RID attach of a device that has a vDEVICE: no vmaster either.
    b.addDevice({ rid: 10, pasidBits: 0 });
    const s1 = b.allocDomain({ type: "paging" });
    b.attach(10, Intent.rid, s1);
    viommu.addVdevice(10, 0x10);
    expect(x(10, -1, 0x1000, R)).toMatchObject({ ok: false, fault: { vendor: { name: "F_TRANSLATION" } } });
    // F_STE_FETCH / C_BAD_STREAMID are not handled IDs (arm_smmu_handle_event: -EOPNOTSUPP).
    expect(x(0x7777, -1, 0, R)).toMatchObject({ ok: false, fault: { vendor: { name: "C_BAD_STREAMID" } } });
    expect(got).toEqual([]);
    expect(b.drainEvents().map((e) => e.id)).toEqual([
      EventId.F_TRANSLATION,
      EventId.F_TRANSLATION,
      EventId.F_TRANSLATION,
      EventId.C_BAD_STREAMID,
    ]);
  });

  it("the vmaster is the attach's: after removeVdevice events keep the vSID; a new attach drops it", () => {
    const { b, x, got, viommu, dom } = setup();
    viommu.removeVdevice(8);
    x(8, 1, 0x5000, R);
    expect(got.map((e) => e.data[4])).toEqual([0x99]);
    // Re-attaching without a vDEVICE is refused (ENOENT): the old attach and its vmaster stay.
    expect(code(() => b.attach(8, Intent.ridAllPasids, dom))).toBe("ENOENT");
    x(8, 1, 0x5000, R);
    expect(got.map((e) => e.data[4])).toEqual([0x99, 0x99]);
    viommu.addVdevice(8, 0x42);
    b.attach(8, Intent.ridAllPasids, dom);
    x(8, 1, 0x5000, R);
    expect(got.map((e) => e.data[4])).toEqual([0x99, 0x99, 0x42]);
    b.detach(8, Intent.ridAllPasids);
    b.attach(8, Intent.ridAllPasids, viommu.allocNested({ ste: [9n, 0n] }, {}));
    b.detach(8, Intent.ridAllPasids);
    const s1 = b.allocDomain({ type: "paging" });
    s1.map(0, 0x7000, 0x1000, Perm.R);
    b.attach(8, Intent.rid, s1);
    x(8, -1, 0x5000, R);
    expect(got).toHaveLength(3);
  });

  it("setEventSink: one per type (EEXIST), null removes it, bad arguments are EINVAL / EOPNOTSUPP", () => {
    const { x, got, viommu } = setup();
    expect(code(() => viommu.setEventSink("arm-smmuv3", () => {}))).toBe("EEXIST");
    viommu.setEventSink("selftest", () => {}); // another type: its own queue (it gets nothing here)
    expect(code(() => viommu.setEventSink("", () => {}))).toBe("EINVAL");
    expect(code(() => viommu.setEventSink(3 as unknown as string, () => {}))).toBe("EINVAL");
    expect(code(() => viommu.setEventSink("default", () => {}))).toBe("EOPNOTSUPP");
    expect(code(() => viommu.setEventSink("tegra", "f" as never))).toBe("EINVAL");
    viommu.setEventSink("arm-smmuv3", null);
    viommu.setEventSink("arm-smmuv3", null); // harmless
    x(8, 1, 0x5000, R);
    expect(got).toEqual([]);
    const again: ViommuEvent[] = [];
    viommu.setEventSink("arm-smmuv3", (e) => {
      again.push(e);
      throw new Error("consumer failed"); // the SMMU goes on
    });
    expect(x(8, 1, 0x5000, R)).toMatchObject({ ok: false });
    expect(x(8, 1, 0x1008, R)).toMatchObject({ ok: true });
    expect(again).toHaveLength(1);
  });
});
