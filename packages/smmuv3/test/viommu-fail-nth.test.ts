/**
 * fail_nth over every new operation (iommufd_fail_nth.c in spirit): the allocations Linux
 * makes on each path (arm_vsmmu_alloc's vIOMMU, the vDEVICE object, the nested domain,
 * the vmaster of a nested attach, arm_vsmmu_cache_invalidate's command array) are FailNth
 * points; failing any of them leaves memory, tables, the command queue and every object
 * exactly as before. The operations Linux makes without allocating pass no point.
 */
import { Access, Intent, PhysicalMemory } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { SmmuViommu } from "../src/index.ts";
import { CmdOp, encodeCommand } from "../src/index.ts";
import { guestMemory, type VRig, VSTE0, VSTE1, vrig } from "./viommu-rig.ts";

interface State extends VRig {
  v: SmmuViommu;
}

function base(): State {
  const r = vrig({ stallModel: "both" });
  r.b.addDevice({ rid: 8, pasidBits: 0, canStall: true });
  r.b.addDevice({ rid: 9, pasidBits: 0 });
  const parent = guestMemory(r);
  const v = r.b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
  return { ...r, v };
}

/** Everything an operation could change, comparable. */
function observe(s: State) {
  const json = JSON.stringify(s.b.dump(), (_k, v) => (typeof v === "bigint" ? v.toString() : v));
  return {
    json,
    blocks: s.tables.stats().blocks,
    prod: s.b.hw.cmdqProd,
    viommus: s.b.viommus.size,
    vdevices: s.v.vdevices,
    vsid8: s.v.virtId(8),
    attached8: s.b.attached(8, Intent.ridAllPasids),
    held: s.b.hw.stalls.held,
  };
}

/** [name, allocation points, setup returning the operation to sweep]. */
const withPoints: [string, number, (s: State) => () => unknown][] = [
  ["allocViommu", 1, (s) => () => s.b.allocViommu({ type: "arm-smmuv3", rid: 9, parent: s.v.parent })],
  ["addVdevice", 1, (s) => () => s.v.addVdevice(8, 0x99)],
  ["allocNested", 1, (s) => () => s.v.allocNested({ ste: [VSTE0, VSTE1] }, {})],
  [
    "attach nested (vmaster)",
    1,
    (s) => {
      s.v.addVdevice(8, 0x99);
      const d = s.v.allocNested({ ste: [VSTE0, VSTE1] }, {});
      return () => s.b.attach(8, Intent.ridAllPasids, d);
    },
  ],
  [
    "invalidate",
    1,
    (s) => {
      s.v.addVdevice(8, 0x99);
      const cmds = [
        encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 1 }),
        encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: 0x99 }),
      ];
      return () => s.v.invalidate(cmds);
    },
  ],
];

describe("fail_nth over the vIOMMU operations", () => {
  for (const [name, points, prepare] of withPoints) {
    it(`${name}: each of its ${points} allocation point(s) fails cleanly, then it succeeds`, () => {
      let failures = 0;
      let done = false;
      for (let nth = 1; nth <= points + 2 && !done; nth++) {
        const s = base();
        const run = prepare(s);
        const before = observe(s);
        const snap = s.memory.snapshot();
        s.memory.failNth.arm(nth);
        try {
          run();
          done = true;
        } catch (e) {
          expect((e as { code?: string }).code, `${name} nth ${nth}`).toBe("ENOMEM");
          failures++;
          expect(observe(s), `${name} nth ${nth}`).toEqual(before);
          expect(PhysicalMemory.sameContents(snap, s.memory.snapshot()), `${name} nth ${nth}`).toBe(true);
        } finally {
          s.memory.failNth.disarm();
        }
      }
      expect([failures, done]).toEqual([points, true]);
    });
  }

  it("invalidate's ENOMEM leaves entry_num as passed (arm_vsmmu_cache_invalidate returns before setting it)", () => {
    const s = base();
    s.memory.failNth.arm(1);
    try {
      s.v.invalidate([encodeCommand({ op: CmdOp.TLBI_NH_ALL }), encodeCommand({ op: CmdOp.TLBI_NH_ALL })]);
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({
        code: "ENOMEM",
        details: { handled: 2, site: "arm_vsmmu_cache_invalidate" },
      });
    }
  });

  it("removeVdevice, setEventSink, free, a nested domain's free, pageResponse and removeDevice pass no allocation point", () => {
    const s = base();
    s.v.addVdevice(9, 0x5);
    const n = s.v.allocNested({ ste: [0n, 0n] }, {});
    const d = s.b.allocDomain({ type: "paging" });
    s.b.attach(8, Intent.rid, d);
    const o = s.x(8, -1, 0x1000, Access.READ);
    const req = o.ok ? undefined : o.fault.pageRequest;
    expect(req).toMatchObject({ rid: 8, grpid: 0 });
    const points = s.memory.failNth.points;
    s.memory.failNth.arm(1);
    s.v.removeVdevice(9);
    s.v.setEventSink("arm-smmuv3", () => {});
    s.v.setEventSink("arm-smmuv3", null);
    n.free();
    s.b.pageResponse(req!, "invalid");
    s.b.detach(8, Intent.rid);
    s.b.removeDevice(9);
    s.v.free();
    expect([s.memory.failNth.armed, s.memory.failNth.points]).toEqual([true, points]);
    s.memory.failNth.disarm();
  });
});
