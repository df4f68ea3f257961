/**
 * The stall model (ARM IHI 0070 3.12.2, 5.5, 4.7.1-4.7.2, 6.3.1 STALL_MODEL, 6.3.6
 * STALL_MAX) as Linux 6.15 drives it: master->stall_enabled for a "dma-can-stall" device
 * on an SMMU with ARM_SMMU_FEAT_STALLS (or every device with STALL_FORCE,
 * arm_smmu_probe_device), CD.S (arm_smmu_make_s1_cd), STE.S1STALLD
 * (arm_smmu_make_cdtable_ste), the page request of a stall record (arm_smmu_handle_event)
 * and its CMD_RESUME (arm_smmu_page_response).
 */
import type { Fault, ViommuEvent } from "@iommu-kit/core";
import { Access, Intent, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { SmmuV3Config } from "../src/index.ts";
import {
  CmdOp,
  decodeCommand,
  encodeCommand,
  ResumeResp,
  registersFor,
  smmuv3Backend,
} from "../src/index.ts";
import { recordBytes, rig, s1Cd, s1Ste } from "./rig.ts";
import { code, guest, steWords, vrig } from "./viommu-rig.ts";

const R = Access.READ;
const W = Access.WRITE;

/** rid 4 (canStall unless said) on `config`, a stage-1 domain with IOVA 0 -> 0x7000 read-only. */
function setup(config: SmmuV3Config = { stallModel: "both" }, canStall = true) {
  const r = vrig(config);
  r.b.addDevice({ rid: 4, pasidBits: 0, canStall });
  const d = r.b.allocDomain({ type: "paging" });
  d.map(0, 0x7000, 0x1000, Perm.R);
  r.b.attach(4, Intent.rid, d);
  r.b.drainEvents();
  r.trace();
  return { ...r, d };
}

function faultOf(o: ReturnType<ReturnType<typeof vrig>["x"]>): Fault {
  if (o.ok) throw new Error("expected a fault");
  return o.fault;
}

/** CMD_RESUME as arm_smmu_page_response builds it. */
const resume = (sid: number, stag: number, resp: number): [bigint, bigint] => [
  BigInt(CmdOp.RESUME) | (BigInt(resp) << 12n) | (BigInt(sid) << 32n),
  BigInt(stag),
];

describe("STALL_MODEL, STALL_MAX and the capability report", () => {
  it("IDR0.STALL_MODEL [25:24] and IDR5.STALL_MAX [31:16] from the config; bad values are EINVAL", () => {
    const regs = (c: SmmuV3Config) => registersFor(c);
    const sm = (c: SmmuV3Config) => Number((regs(c).IDR0! >> 24n) & 3n);
    const max = (c: SmmuV3Config) => Number(regs(c).IDR5! >> 16n);
    expect([sm({}), max({})]).toEqual([1, 0]);
    expect([sm({ stallModel: "both" }), max({ stallModel: "both" })]).toEqual([0, 32]);
    expect([sm({ stallModel: "stall", stallMax: 3 }), max({ stallModel: "stall", stallMax: 3 })]).toEqual([
      2, 3,
    ]);
    expect(max({ stallModel: "terminate", stallMax: 3 })).toBe(0); // RES0 with 0b01
    const { memory, tables } = vrig();
    for (const c of [{ stallModel: "x" }, { stallMax: 0 }, { stallMax: 65536 }, { stallMax: 1.5 }])
      expect(code(() => smmuv3Backend.create({ memory, tables, name: "y" }, c))).toBe("EINVAL");
  });

  it("features.iopf: a canStall device with FEAT_STALLS, or every device with STALL_FORCE", () => {
    const iopf = (c: SmmuV3Config, canStall: boolean) => setup(c, canStall).b.capabilities(4).features.iopf;
    expect(iopf({ stallModel: "both" }, true)).toBe(true);
    expect(iopf({ stallModel: "both" }, false)).toBe(false);
    expect(iopf({}, true)).toBe(false);
    expect(iopf({ stallModel: "stall" }, false)).toBe(true);
  });

  it("CD.S = stall_enabled; STE.S1STALLD = FEAT_STALLS && !stall_enabled", () => {
    const bits = (c: SmmuV3Config, canStall: boolean) => {
      const { b } = setup(c, canStall);
      const s = (
        b.dump(4) as {
          streams: { ste: Record<string, string>; cds: Record<string, Record<string, string>> }[];
        }
      ).streams[0]!;
      return [s.ste.S1STALLD, s.cds["0"]!.S];
    };
    expect(bits({ stallModel: "both" }, true)).toEqual(["0x0", "0x1"]);
    expect(bits({ stallModel: "both" }, false)).toEqual(["0x1", "0x0"]);
    expect(bits({}, true)).toEqual(["0x0", "0x0"]);
    expect(bits({ stallModel: "stall" }, false)).toEqual(["0x0", "0x1"]);
  });
});

describe("a stalled transaction (3.12.2)", () => {
  it("a stage-1 F_PERMISSION / F_TRANSLATION stalls: STALL = 1, STAG, and a page request", () => {
    const { b, x } = setup();
    const f = faultOf(x(4, -1, 0x123, W));
    expect(f).toMatchObject({
      class: "permission",
      recorded: true,
      vendor: { name: "F_PERMISSION", fields: { STALL: 1, STAG: 0 } },
      pageRequest: { rid: 4, pasid: -1, addr: 0, perm: Perm.W, priv: false, grpid: 0, last: true },
    });
    // ID 0x13, StreamID 4; STAG 0 [79:64], STALL [95], CLASS = IN [105:104]; InputAddr 0x123.
    expect([...f.vendor.raw!]).toEqual([
      0x13,
      0,
      0,
      0,
      4,
      0,
      0,
      0,
      0,
      0,
      0,
      0x80,
      0,
      2,
      0,
      0,
      0x23,
      1,
      0,
      0,
      0,
      0,
      0,
      0,
      ...new Array(8).fill(0),
    ]);
    expect(f.vendor.raw).toEqual(recordBytes({ id: 0x13, streamId: 4, stall: 1, cls: 2, inputAddr: 0x123n }));
    const g = faultOf(x(4, -1, 0x3008, R | Access.PRIV | Access.EXEC));
    expect(g).toMatchObject({
      class: "translation",
      vendor: { name: "F_TRANSLATION", fields: { STALL: 1, STAG: 1 } },
      pageRequest: { addr: 0x3000, perm: Perm.R | Perm.X, priv: true, grpid: 1, last: true },
    });
    expect(b.hw.stalls.held).toBe(2);
    expect(b.drainEvents()).toMatchObject([
      { id: 0x13, stall: 1, stag: 0 },
      { id: 0x10, stall: 1, stag: 1, pnu: 1, ind: 1, rnw: 1 },
    ]);
    // explain never stalls (no STAG taken).
    expect(b.explain(4, -1, 0x5000n, R).at(-1)!.note).toContain("F_TRANSLATION");
    expect(b.hw.stalls.held).toBe(2);
  });

  it("pageResponse: CMD_RESUME Retry / Abort with the STAG, no CMD_SYNC; the retried DMA succeeds; ENOENT after", () => {
    const { b, x, d, trace } = setup();
    const f = faultOf(x(4, -1, 0x3008, R));
    d.map(0x3000, 0x9000, 0x1000, Perm.R);
    trace();
    b.pageResponse(f.pageRequest!, "success");
    expect(trace()).toEqual([resume(4, 0, ResumeResp.RETRY)]);
    expect(decodeCommand(...resume(4, 0, ResumeResp.RETRY))).toMatchObject({
      op: 0x44,
      sid: 4,
      stag: 0,
      resp: 1,
    });
    expect(b.hw.stalls.held).toBe(0);
    expect(x(4, -1, 0x3008, R)).toMatchObject({ ok: true, pa: 0x9008 });
    expect(code(() => b.pageResponse(f.pageRequest!, "success"))).toBe("ENOENT");
    const g = faultOf(x(4, -1, 0x5000, W));
    expect(g.pageRequest!.grpid).toBe(0); // the STAG was returned to the pool
    b.pageResponse(g.pageRequest!, "invalid");
    expect(trace()).toEqual([resume(4, 0, ResumeResp.ABORT)]);
    expect(b.hw.stalls.held).toBe(0);
  });

  it("pageResponse errnos: unknown device ENOENT, unknown STAG ENOENT, bad code or request EINVAL; nothing issued", () => {
    const { b, x, trace } = setup();
    const req = faultOf(x(4, -1, 0x5000, R)).pageRequest!;
    trace();
    expect(code(() => b.pageResponse({ ...req, rid: 99 }, "success"))).toBe("ENOENT");
    expect(code(() => b.pageResponse({ ...req, grpid: 1 }, "success"))).toBe("ENOENT");
    expect(code(() => b.pageResponse(req, "retry" as never))).toBe("EINVAL");
    expect(code(() => b.pageResponse(null as never, "success"))).toBe("EINVAL");
    expect(code(() => b.pageResponse({ rid: 4 } as never, "success"))).toBe("EINVAL");
    expect(trace()).toEqual([]);
    expect(b.hw.stalls.held).toBe(1);
  });

  it("what does not stall: a device with S1STALLD, terminate-only SMMUs, stage-2 faults, configuration errors", () => {
    const noStall = setup({ stallModel: "both" }, false);
    expect(faultOf(noStall.x(4, -1, 0x5000, R))).toMatchObject({
      recorded: true,
      vendor: { fields: { StreamID: 4 } },
    });
    expect(faultOf(noStall.x(4, -1, 0x5000, R)).pageRequest).toBe(undefined);
    expect(faultOf(noStall.x(4, -1, 0x5000, R)).vendor.fields.STALL).toBe(undefined);
    expect(faultOf(setup({}, true).x(4, -1, 0x5000, R)).pageRequest).toBe(undefined);
    const s = setup();
    s.b.addDevice({ rid: 5, pasidBits: 0, canStall: true });
    const s2 = s.b.allocDomain({ type: "paging", format: "arm-lpae-s2-4k" });
    s.b.attach(5, Intent.rid, s2);
    expect(faultOf(s.x(5, -1, 0x5000, R))).toMatchObject({
      vendor: { name: "F_TRANSLATION", fields: { S2: 1 } },
    });
    expect(faultOf(s.x(5, -1, 0x5000, R)).pageRequest).toBe(undefined);
    expect(faultOf(s.x(4, 3, 0x5000, R))).toMatchObject({ vendor: { name: "C_BAD_SUBSTREAMID" } });
    expect(s.b.hw.stalls.held).toBe(0);
  });

  it("STALL_MAX bounds the held transactions: past it a fault terminates (recorded, STALL = 0)", () => {
    const { b, x } = setup({ stallModel: "both", stallMax: 2 });
    const a = faultOf(x(4, -1, 0x5000, R));
    faultOf(x(4, -1, 0x6000, R));
    const c = faultOf(x(4, -1, 0x7000, R));
    expect(c).toMatchObject({ recorded: true, vendor: { name: "F_TRANSLATION" } });
    expect(c.pageRequest).toBe(undefined);
    expect(c.vendor.raw![11]).toBe(0);
    expect(b.hw.stalls.held).toBe(2);
    b.pageResponse(a.pageRequest!, "invalid");
    expect(faultOf(x(4, -1, 0x7000, R)).pageRequest!.grpid).toBe(0);
  });

  it("a stall whose record the event queue cannot take is not held: the request fails unrecorded", () => {
    const { b, x } = setup();
    b.hw.writeRegister("CR0", 0x9n); // CMDQEN | SMMUEN: EVTQEN off
    const f = faultOf(x(4, -1, 0x5000, R));
    expect(f).toMatchObject({ recorded: false, vendor: { name: "F_TRANSLATION" } });
    expect(f.pageRequest).toBe(undefined);
    expect(b.hw.stalls.held).toBe(0);
  });

  it("CMD_RESUME of another StreamID does nothing; CMD_STALL_TERM and SMMUEN = 0 end every stall", () => {
    const { b, x } = setup();
    faultOf(x(4, -1, 0x5000, R));
    faultOf(x(4, -1, 0x6000, R));
    b.submit([encodeCommand({ op: CmdOp.RESUME, sid: 5, stag: 0, resp: ResumeResp.RETRY })]);
    expect(b.hw.stalls.held).toBe(2);
    b.submit([encodeCommand({ op: CmdOp.STALL_TERM, sid: 4 })]);
    expect(b.hw.stalls.held).toBe(0);
    faultOf(x(4, -1, 0x5000, R));
    b.hw.writeRegister("CR0", 0xcn);
    expect(b.hw.stalls.held).toBe(0);
    // A terminate-only SMMU refuses both (CERROR_ILL, 4.7.1 / 4.7.2).
    const t = setup({});
    expect(code(() => t.b.submit([encodeCommand({ op: CmdOp.RESUME, sid: 4 })]))).toBe("EIO");
    expect(code(() => t.b.submit([encodeCommand({ op: CmdOp.STALL_TERM, sid: 4 })]))).toBe("EIO");
  });

  it("removeDevice answers outstanding stalls INVALID (iopf_queue_remove_device): CMD_RESUME Abort, no CMD_SYNC", () => {
    const { b, x, trace } = setup();
    faultOf(x(4, -1, 0x5000, R));
    faultOf(x(4, -1, 0x6000, R));
    b.detach(4, Intent.rid);
    trace();
    b.removeDevice(4);
    // Then removeStream drops the device's L2 stream table (CFGI_STE + CMD_SYNC).
    expect(trace()).toEqual([
      resume(4, 0, ResumeResp.ABORT),
      resume(4, 1, ResumeResp.ABORT),
      encodeCommand({ op: CmdOp.CFGI_STE, sid: 4 }),
      [BigInt(CmdOp.CMD_SYNC), 0n],
    ]);
    expect(b.hw.stalls.held).toBe(0);
  });

  it("a guest stage-1 stall (guest CD.S) goes to the page requests, not to the vEVENTQ", () => {
    const r = vrig({ stallModel: "both" });
    const { viommu } = guest(r, 8, 0x99, { S: 1 });
    const got: ViommuEvent[] = [];
    viommu.setEventSink("arm-smmuv3", (e) => got.push(e));
    const f = faultOf(r.x(8, 1, 0x5000, R));
    expect(f).toMatchObject({
      vendor: { fields: { STALL: 1, STAG: 0 } },
      pageRequest: { rid: 8, pasid: 1, grpid: 0 },
    });
    expect(got).toEqual([]);
    r.b.pageResponse(f.pageRequest!, "invalid");
    expect(r.b.hw.stalls.held).toBe(0);
  });
});

describe("stall rules of the configuration structures (5.5)", () => {
  const IDR0 = registersFor().IDR0!;
  const CD = 0x40_0000;
  const PT = 0x50_0000;

  it("C_BAD_CD: CD.S = 1 under STE.S1STALLD = 1 (0b00); CD.S = 0 with stalls forced (0b10)", () => {
    const both = rig({}, { IDR0: IDR0 & ~(3n << 24n), IDR5: registersFor().IDR5! | (4n << 16n) });
    both.ste(1, s1Ste(CD, { S1STALLD: 1 }));
    both.cd(CD, s1Cd(PT, { S: 1 }));
    expect(both.fault(1, -1, 0, R).vendor.raw).toEqual(recordBytes({ id: 0x0a, streamId: 1 }));
    both.ste(2, s1Ste(CD));
    expect(both.fault(2, -1, 0, R)).toMatchObject({
      vendor: { name: "F_TRANSLATION", fields: { STALL: 1 } },
    });
    const forced = rig(
      {},
      { IDR0: (IDR0 & ~(3n << 24n)) | (2n << 24n), IDR5: registersFor().IDR5! | (4n << 16n) },
    );
    forced.ste(1, s1Ste(CD));
    forced.cd(CD, s1Cd(PT));
    expect(forced.fault(1, -1, 0, R).vendor.raw).toEqual(recordBytes({ id: 0x0a, streamId: 1 }));
  });

  it("STALL_MODEL 0b10: an S2 STE without S2S is C_BAD_STE, which 6.15's stage-2 STEs are (no S2S)", () => {
    const { b, x } = setup({ stallModel: "stall" });
    b.addDevice({ rid: 5, pasidBits: 0 });
    const s2 = b.allocDomain({ type: "paging", format: "arm-lpae-s2-4k" });
    s2.map(0, 0x7000, 0x1000, Perm.R);
    b.attach(5, Intent.rid, s2);
    expect((steWords(b, 5)[2]! >> 57n) & 3n).toBe(2n); // S2R [58] set, S2S [57] clear
    expect(faultOf(x(5, -1, 0, R))).toMatchObject({ class: "bad-config", vendor: { name: "C_BAD_STE" } });
    expect(x(4, -1, 0, R)).toMatchObject({ ok: true, pa: 0x7000 }); // stage 1 with CD.S works
  });
});
