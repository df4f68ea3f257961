/**
 * Guest invalidations through the vIOMMU (Linux 6.15 arm_vsmmu_cache_invalidate and
 * arm_vsmmu_convert_user_cmd, arm-smmu-v3-iommufd.c), checked against the exact commands
 * that reach the physical command queue (read back from queue memory), and the
 * command-queue recovery they can need (ARM IHI 0070 7.1, arm_smmu_cmdq_skip_err).
 */
import { Access, Intent, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { CmdOp, encodeCommand, encodeLeafPte, registersFor } from "../src/index.ts";
import { err, guest, hpa, vrig } from "./viommu-rig.ts";

const R = Access.READ;
const SYNC: [bigint, bigint] = [BigInt(CmdOp.CMD_SYNC), 0n];
const LOW32 = 0xffff_ffffn;

function setup(registers?: Record<string, bigint>) {
  const r = vrig({}, registers);
  const g = guest(r); // rid 8 is vSID 0x99
  const V = BigInt(g.viommu.vmid) << 32n;
  /** The command with the vIOMMU's VMID in [47:32]. */
  const vm = (c: [bigint, bigint]): [bigint, bigint] => [(c[0] & ~(0xffffn << 32n)) | V, c[1]];
  /** The command with StreamID 8 in [63:32]. */
  const sid8 = (c: [bigint, bigint]): [bigint, bigint] => [(c[0] & LOW32) | (8n << 32n), c[1]];
  return { ...r, ...g, V, vm, sid8 };
}

describe("arm_vsmmu_convert_user_cmd: what reaches the command queue", () => {
  it("TLBI_NH_* get the vIOMMU's VMID, TLBI_NSNH_ALL becomes TLBI_NH_ALL, CFGI_CD(_ALL) get the StreamID; one CMD_SYNC", () => {
    const { viommu, trace, V, vm, sid8 } = setup();
    const va = encodeCommand({ op: CmdOp.TLBI_NH_VA, asid: 42, vmid: 999, addr: 0x1000n, leaf: 1, ttl: 3 });
    const vaa = encodeCommand({ op: CmdOp.TLBI_NH_VAA, vmid: 7, num: 3, scale: 1, tg: 1, addr: 0x2000n });
    const all = encodeCommand({ op: CmdOp.TLBI_NH_ALL, vmid: 0xffff });
    const asid = encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 42 });
    const nsnh: [bigint, bigint] = [BigInt(CmdOp.TLBI_NSNH_ALL) | (0xabcdn << 32n), 0x1234n];
    const cd = encodeCommand({ op: CmdOp.CFGI_CD, sid: 0x99, ssid: 1, leaf: 1 });
    const cdAll = encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: 0x99 });
    // Strings are read as the uAPI's le64 words would be.
    const asStrings = [`0x${asid[0].toString(16)}`, "0"];
    expect(viommu.invalidate([va, vaa, all, asid, nsnh, cd, cdAll, asStrings])).toBe(8);
    expect(trace()).toEqual([
      vm(va),
      vm(vaa),
      vm(all),
      vm(asid),
      [BigInt(CmdOp.TLBI_NH_ALL) | V, 0n],
      sid8(cd),
      sid8(cdAll),
      vm(asid),
      SYNC,
    ]);
    expect(viommu.invalidate([])).toBe(0);
    expect(trace()).toEqual([]);
  });

  it("ATC_INV gets the StreamID (IDR0.ATS); without ATS the SMMU refuses it and the driver skips it: still handled", () => {
    const withAts = setup({ IDR0: registersFor().IDR0! | (1n << 10n) });
    const atc = encodeCommand({ op: CmdOp.ATC_INV, sid: 0x99, ssid: 3, ssv: 1, addr: 0x4000n });
    expect(withAts.viommu.invalidate([atc])).toBe(1);
    expect(withAts.trace()).toEqual([withAts.sid8(atc), SYNC]);
    const s = setup();
    expect(s.viommu.invalidate([atc])).toBe(1);
    // CERROR_ILL -> arm_smmu_cmdq_skip_err: the slot now holds a CMD_SYNC; GERRORN acknowledged.
    expect(s.trace()).toEqual([SYNC, SYNC]);
    expect(s.b.hw.readRegister("GERROR")).toBe(s.b.hw.readRegister("GERRORN"));
  });

  it("batches of CMDQ_BATCH_ENTRIES - 1 = 63 commands, each with its CMD_SYNC", () => {
    const { viommu, trace, vm } = setup();
    const cmds = Array.from({ length: 70 }, (_, i) => encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: i }));
    expect(viommu.invalidate(cmds)).toBe(70);
    expect(trace()).toEqual([...cmds.slice(0, 63).map(vm), SYNC, ...cmds.slice(63).map(vm), SYNC]);
  });
});

describe("arm_vsmmu_cache_invalidate: errors and the handled count", () => {
  it("an unknown vSID (arm_vsmmu_vsid_to_sid) or another opcode is EIO at its index; the batch so far is not issued", () => {
    const { viommu, trace, vm } = setup();
    const asid = encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 42 });
    for (const op of [CmdOp.CFGI_CD, CmdOp.CFGI_CD_ALL, CmdOp.ATC_INV]) {
      // StreamID 8 is the physical one: only vSIDs name devices.
      for (const sid of [8, 0x98, 0xffff_ffff]) {
        expect(err(() => viommu.invalidate([asid, asid, encodeCommand({ op, sid })]))).toEqual({
          code: "EIO",
          details: { handled: 2, op },
        });
        expect(trace()).toEqual([]); // the kernel's `goto out` skips the issue of [last, cur)
      }
    }
    for (const op of [
      CmdOp.CFGI_STE,
      CmdOp.CFGI_STE_RANGE,
      CmdOp.TLBI_S12_VMALL,
      CmdOp.TLBI_S2_IPA,
      CmdOp.TLBI_EL2_ALL,
      CmdOp.CMD_SYNC,
      CmdOp.PRI_RESP,
      CmdOp.RESUME,
      CmdOp.PREFETCH_CONFIG,
      0x7f,
    ]) {
      expect(err(() => viommu.invalidate([encodeCommand({ op, sid: 0x99 })]))).toEqual({
        code: "EIO",
        details: { handled: 0, op },
      });
    }
    expect(trace()).toEqual([]);
    // Past a batch boundary: the first 63 were issued, commands 63 and 64 were not.
    const many = Array.from({ length: 65 }, () => asid);
    const bad = encodeCommand({ op: CmdOp.CFGI_CD, sid: 1 });
    expect(err(() => viommu.invalidate([...many, bad]))).toMatchObject({
      code: "EIO",
      details: { handled: 65 },
    });
    expect(trace()).toEqual([...many.slice(0, 63).map(vm), SYNC]);
  });

  it("a removed vDEVICE's vSID is EIO from then on", () => {
    const { viommu, trace } = setup();
    const cd = encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: 0x99 });
    expect(viommu.invalidate([cd])).toBe(1);
    trace();
    viommu.removeVdevice(8);
    expect(err(() => viommu.invalidate([cd]))).toMatchObject({ code: "EIO", details: { handled: 0 } });
    expect(trace()).toEqual([]);
  });

  it("malformed entries are EINVAL with handled 0 and nothing issued, wherever they are", () => {
    const { viommu, trace } = setup();
    const ok = encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 1 });
    for (const bad of [[-1n, 0n], [1n << 64n, 0n], [1n], [1, 0], "x", null, { cmd: ok }, ["zz", "0"]])
      expect(err(() => viommu.invalidate([ok, ok, bad]))).toMatchObject({
        code: "EINVAL",
        details: { handled: 0, index: 2 },
      });
    expect(err(() => viommu.invalidate("nope" as never))).toMatchObject({ code: "EINVAL" });
    expect(trace()).toEqual([]);
  });

  it("7.1 + arm_smmu_cmdq_skip_err: a guest command the SMMU finds illegal (SSEC) is skipped; the batch completes", () => {
    const { b, x, memory, viommu, trace, vm } = setup();
    const [a0, a1] = encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 42 });
    expect(
      viommu.invalidate([
        [a0, a1],
        [a0 | (1n << 10n), a1],
      ]),
    ).toBe(2);
    expect(trace()).toEqual([vm([a0, a1]), SYNC, SYNC]); // the SSEC command became a CMD_SYNC
    // Recovered: CMDQ_ERR acknowledged (GERROR == GERRORN), CONS == PROD, ERR reads CERROR_NONE.
    expect(b.hw.readRegister("GERROR")).toBe(b.hw.readRegister("GERRORN"));
    expect(b.hw.readRegister("CMDQ_CONS")).toBe(b.hw.readRegister("CMDQ_PROD"));
    // Later operations work: a guest TLBI reaches the IOTLB, a host map + attach succeed.
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x50_0008) });
    memory.write64(hpa(0x10_3000) + 8, encodeLeafPte(0x60_0000n, 3, { ap: 1, ng: 1 }));
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x50_0008) });
    expect(viommu.invalidate([[a0, a1]])).toBe(1);
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x60_0008) });
    b.addDevice({ rid: 0x55, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0x1000, 0x7000, 0x1000, Perm.R);
    b.attach(0x55, Intent.rid, d);
    expect(x(0x55, -1, 0x1010, R)).toMatchObject({ ok: true, pa: 0x7010 });
  });

  it("a queue that stays stopped (CERROR_ABT) is EIO with handled = the batch's last index (the kernel's cur--)", () => {
    const { b, viommu } = setup();
    // Move CMDQ_BASE off RAM: every command fetch aborts.
    b.hw.writeRegister("CMDQ_BASE", (b.hw.readRegister("CMDQ_BASE") & 0x1fn) | 0x7_0000_0000n);
    const asid = encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 42 });
    expect(err(() => viommu.invalidate([asid, asid, asid]))).toMatchObject({
      code: "EIO",
      details: { handled: 2, cerror: 2 },
    });
  });
});
