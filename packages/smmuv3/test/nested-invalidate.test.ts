/**
 * Guest invalidations of a nested domain (Linux arm_vsmmu_convert_user_cmd,
 * arm-smmu-v3-iommufd.c) and the command-queue recovery they can need (ARM IHI 0070 7.1,
 * arm_smmu_cmdq_skip_err).
 */
import type { IommuError } from "@iommu-kit/core";
import { Access, createTranslation, Intent, outcomeOf, Perm } from "@iommu-kit/core";
import { createTestMemory } from "@iommu-kit/core/testing";
import { describe, expect, it } from "vitest";
import type { SmmuNestedDomain, SmmuPagingDomain } from "../src/index.ts";
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

function make() {
  const { memory, tables } = createTestMemory(2 ** 32, 2 ** 28);
  const b = smmuv3Backend.create({ memory, tables, name: "smmu0" }, {}) as SmmuV3Backend;
  const x = (rid: number, pasid: number, iova: number, access: number) => {
    const out = createTranslation();
    return outcomeOf(b.translate(rid, pasid, iova, access, out), out);
  };
  return { memory, tables, b, x };
}

describe("nested invalidation", () => {
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
    const dom = b.allocDomain({
      type: "nested",
      parent,
      data: { ste: [ste0, `0x${ste1.toString(16)}`] },
    }) as SmmuNestedDomain;
    b.attach(8, Intent.ridAllPasids, dom);
    return { ...m, parent, dom, hpa };
  }

  it("arm_vsmmu_convert_user_cmd: CFGI_CD(_ALL)/ATC_INV of a StreamID the domain does not serve, other opcodes: EIO", () => {
    const { dom } = nested();
    const eio = (cmds: [bigint, bigint][]) => {
      try {
        dom.invalidate(cmds.map((cmd) => ({ cmd })));
      } catch (e) {
        return [(e as IommuError).code, (e as IommuError).details.handled];
      }
      return "none";
    };
    const ok = encodeCommand({ op: CmdOp.CFGI_CD, sid: 8, ssid: 1 });
    expect(eio([ok, encodeCommand({ op: CmdOp.CFGI_CD, sid: 0x99, ssid: 1 })])).toEqual(["EIO", 1]);
    expect(eio([encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: 9 })])).toEqual(["EIO", 0]);
    expect(eio([encodeCommand({ op: CmdOp.ATC_INV, sid: 7 })])).toEqual(["EIO", 0]);
    expect(eio([encodeCommand({ op: CmdOp.ATC_INV, sid: 8 }), ok])).toBe("none");
    for (const op of [
      CmdOp.CFGI_STE,
      CmdOp.CFGI_STE_RANGE,
      CmdOp.TLBI_S12_VMALL,
      CmdOp.CMD_SYNC,
      CmdOp.PRI_RESP,
    ])
      expect(eio([encodeCommand({ op })])).toEqual(["EIO", 0]);
    // Not a 64-bit word: malformed, EINVAL.
    expect(eio([[-1n, 0n]])).toEqual(["EINVAL", 0]);
    expect(eio([[1n << 64n, 0n]])).toEqual(["EINVAL", 0]);
  });

  it("7.1 + arm_smmu_cmdq_skip_err: a guest command the SMMU finds illegal (SSEC) fails alone; the queue goes on", () => {
    const { b, x, memory, hpa, dom } = nested();
    const [a0, a1] = encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 42 });
    try {
      dom.invalidate([{ cmd: [a0, a1] }, { cmd: [a0 | (1n << 10n), a1] }]);
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: "EIO", details: { handled: 1, cerror: 1 } });
    }
    // Recovered: CMDQ_ERR acknowledged (GERROR == GERRORN), CONS == PROD, ERR reads CERROR_NONE.
    expect(b.hw.readRegister("GERROR")).toBe(b.hw.readRegister("GERRORN"));
    expect(b.hw.readRegister("CMDQ_CONS")).toBe(b.hw.readRegister("CMDQ_PROD"));
    // Later operations work: a guest TLBI reaches the IOTLB, a host map + attach succeed.
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x50_0008) });
    memory.write64(hpa(0x10_3000) + 8, encodeLeafPte(0x60_0000n, 3, { ap: 1, ng: 1 }));
    expect(dom.invalidate([{ cmd: [a0, a1] }])).toBe(1);
    expect(x(8, 1, 0x1008, R)).toMatchObject({ pa: hpa(0x60_0008) });
    b.addDevice({ rid: 0x55, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0x1000, 0x7000, 0x1000, Perm.R);
    b.attach(0x55, Intent.rid, d);
    expect(x(0x55, -1, 0x1010, R)).toMatchObject({ ok: true, pa: 0x7010 });
  });
});
