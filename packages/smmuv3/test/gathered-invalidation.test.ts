/**
 * Gathered invalidation (issue 16): one unmap call through a domain puts exactly the
 * commands Linux's arm_smmu_iotlb_sync -> arm_smmu_tlb_inv_range_domain ->
 * __arm_smmu_tlb_inv_range (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c) batches into the
 * command queue in memory, then one CMD_SYNC: range TLBIs with IDR3.RIL (ARM IHI 0070
 * 4.4.1.1: TG, TTL, NUM, SCALE), else one TLBI per granule; and the SMMU model drops
 * exactly the range a range TLBI encodes, (NUM + 1) * 2^SCALE granules from ADDR.
 */

import { Access, createTranslation, Intent, Perm } from "@iommu-kit/core";
import { createTestMemory } from "@iommu-kit/core/testing";
import { describe, expect, it } from "vitest";
import { CmdOp, decodeCommandHalves } from "../src/format/command.ts";
import type { SmmuPagingDomain } from "../src/index.ts";
import { type SmmuV3Backend, smmuv3Backend } from "../src/index.ts";

const SID = 0x10;
const AT = 0x40_0020_0000; // 2 MiB-aligned: one level-3 table
const RW = Perm.R | Perm.W;

function make(ril = true, format?: string) {
  const { memory, tables } = createTestMemory(2 ** 36, 2 ** 28);
  const b = smmuv3Backend.create({ memory, tables, name: "smmu0" }, {}) as SmmuV3Backend;
  // An SMMU without IDR3.RIL: the driver and the model read the same latched bit (4.4.1).
  if (!ril) (b.hw as unknown as { ril: boolean }).ril = false;
  b.addDevice({ rid: SID, pasidBits: 0 });
  const d = b.allocDomain(
    format === undefined ? { type: "paging" } : { type: "paging", format },
  ) as SmmuPagingDomain;
  b.attach(SID, Intent.rid, d);
  return { b, d, memory };
}

/** The commands between CMDQ_PROD values `from` and now, decoded from queue memory (CMDQ_BASE, 3.5.1). */
function queued(b: SmmuV3Backend, from: number) {
  const base = b.hw.readRegister("CMDQ_BASE");
  const log2 = Number(base & 0x1fn);
  const addr = Number(base & 0xf_ffff_ffff_ffe0n);
  const size = 2 ** log2;
  const out = [];
  for (let p = from; p !== b.hw.cmdqProd; p = (p + 1) & (size * 2 - 1)) {
    const at = addr + (p & (size - 1)) * 16;
    const w = [0, 4, 8, 12].map((o) => b.memory.read32(at + o));
    out.push(decodeCommandHalves(w[0]!, w[1]!, w[2]!, w[3]!));
  }
  return out;
}

function tlbi(op: number, tag: { asid?: number; vmid?: number }, f: Record<string, number | bigint>) {
  return expect.objectContaining({ op, ...tag, ...f });
}

const SYNC = expect.objectContaining({ op: CmdOp.CMD_SYNC });

describe("SMMUv3: one range invalidation and one CMD_SYNC per unmap", () => {
  it("256 x 4K: one TLBI_NH_VA, TG 4K, TTL 3, NUM 0, SCALE 8, LEAF, then CMD_SYNC", () => {
    const { b, d } = make();
    d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R); // keeps the table
    d.map(AT, 0x4000_0000, 256 * 4096, RW);
    const from = b.hw.cmdqProd;
    expect(d.unmap(AT, 256 * 4096)).toBe(256 * 4096);
    expect(queued(b, from)).toEqual([
      tlbi(
        CmdOp.TLBI_NH_VA,
        { asid: d.tagId },
        { tg: 1, ttl: 3, num: 0, scale: 8, leaf: 1, addr: BigInt(AT) },
      ),
      SYNC,
    ]);
  });

  it("the command's exact words in the queue page (4.4.1.1 field positions)", () => {
    const { b, d } = make();
    d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R);
    d.map(AT, 0x4000_0000, 3 * 4096, RW);
    const from = b.hw.cmdqProd;
    d.unmap(AT, 3 * 4096);
    const base = b.hw.readRegister("CMDQ_BASE");
    const at = Number(base & 0xf_ffff_ffff_ffe0n) + (from & (2 ** Number(base & 0x1fn) - 1)) * 16;
    const words = [0, 4, 8, 12].map((o) => b.memory.read32(at + o));
    // w0: opcode 0x12, NUM [16:12] = 2, SCALE [24:20] = 0; ASID [63:48]; w1: LEAF [0], TTL [9:8] = 3,
    // TG [11:10] = 1, ADDR [63:12].
    expect(words).toEqual([0x12 | (2 << 12), d.tagId << 16, (AT % 2 ** 32) | 1 | (3 << 8) | (1 << 10), 0x40]);
  });

  it("a count that is not a power of two: 5 bits of the remaining count per command (33 pages -> 1 + 32)", () => {
    const { b, d } = make();
    d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R);
    d.map(AT, 0x4000_0000, 33 * 4096, RW);
    const from = b.hw.cmdqProd;
    d.unmap(AT, 33 * 4096);
    expect(queued(b, from)).toEqual([
      tlbi(CmdOp.TLBI_NH_VA, { asid: d.tagId }, { num: 0, scale: 0, ttl: 3, addr: BigInt(AT) }),
      tlbi(CmdOp.TLBI_NH_VA, { asid: d.tagId }, { num: 0, scale: 5, ttl: 3, addr: BigInt(AT + 0x1000) }),
      SYNC,
    ]);
  });

  it("an unmap that frees tables: LEAF 0, TTL 0, and one page widened to two (NUM = SCALE = 0 never without TTL)", () => {
    const { b, d } = make();
    d.map(AT, 0x4000_0000, 0x1000, RW);
    const from = b.hw.cmdqProd;
    d.unmap(AT, 0x1000);
    expect(queued(b, from)).toEqual([
      tlbi(
        CmdOp.TLBI_NH_VA,
        { asid: d.tagId },
        { leaf: 0, ttl: 0, tg: 1, num: 0, scale: 1, addr: BigInt(AT) },
      ),
      SYNC,
    ]);
  });

  it("2 MiB blocks: TTL 2 is not claimed for an unknown leaf size (TTL 0), one range command", () => {
    const { b, d } = make();
    d.map(AT, 0x4000_0000, 4 * 0x20_0000, RW);
    const from = b.hw.cmdqProd;
    d.unmap(AT, 4 * 0x20_0000);
    expect(queued(b, from)).toEqual([
      tlbi(CmdOp.TLBI_NH_VA, { asid: d.tagId }, { ttl: 0, tg: 1, num: 0, scale: 11, addr: BigInt(AT) }),
      SYNC,
    ]);
  });

  it("without IDR3.RIL: one TLBI_NH_VA per page (TG 0, TTL 0) batched before one CMD_SYNC", () => {
    const { b, d } = make(false);
    d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R);
    d.map(AT, 0x4000_0000, 4 * 4096, RW);
    const from = b.hw.cmdqProd;
    d.unmap(AT, 4 * 4096);
    const page = (k: number) =>
      tlbi(
        CmdOp.TLBI_NH_VA,
        { asid: d.tagId },
        { tg: 0, ttl: 0, leaf: 1, num: 0, scale: 0, addr: BigInt(AT + k * 0x1000) },
      );
    expect(queued(b, from)).toEqual([page(0), page(1), page(2), page(3), SYNC]);
  });

  it("stage 2: TLBI_S2_IPA with the VMID, the same range fields", () => {
    const { b, d } = make(true, "arm-lpae-s2-4k");
    expect(d.stage).toBe(2);
    d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R);
    d.map(AT, 0x4000_0000, 16 * 4096, RW);
    const from = b.hw.cmdqProd;
    d.unmap(AT, 16 * 4096);
    expect(queued(b, from)).toEqual([
      tlbi(
        CmdOp.TLBI_S2_IPA,
        { vmid: d.tagId },
        { tg: 1, ttl: 3, num: 0, scale: 4, leaf: 1, addr: BigInt(AT) },
      ),
      SYNC,
    ]);
  });

  it("a map issues no command (the SMMU caches no invalid entries)", () => {
    const { b, d } = make();
    const from = b.hw.cmdqProd;
    d.map(AT, 0x4000_0000, 256 * 4096, RW);
    expect(queued(b, from)).toEqual([]);
  });

  it("the model drops exactly (NUM + 1) * 2^SCALE granules from ADDR: a page outside stays stale (4.4.1.1)", () => {
    const { b, d } = make();
    const xl = (iova: number) => {
      const out = createTranslation();
      return b.translate(SID, -1, iova, Access.READ, out) ? out.pa : -1;
    };
    d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R);
    d.map(AT, 0x4000_0000, 8 * 4096, RW);
    expect(xl(AT + 0x4000)).toBe(0x4000_4000);
    expect(xl(AT + 0x10_0000)).toBe(0x1000);
    d.rewriteLeaf(AT + 0x4000, 0x7000_0000);
    d.rewriteLeaf(AT + 0x10_0000, 0x7100_0000);
    d.unmap(AT, 4 * 4096); // NUM 0, SCALE 2: pages 0..3
    expect(xl(AT)).toBe(-1);
    expect(xl(AT + 0x4000)).toBe(0x4000_4000);
    d.unmap(AT + 0x5000, 3 * 4096); // NUM 2, SCALE 0: pages 5..7
    expect(xl(AT + 0x4000)).toBe(0x4000_4000);
    d.unmap(AT + 0x4000, 4096);
    expect(xl(AT + 0x4000)).toBe(-1);
    expect(xl(AT + 0x10_0000)).toBe(0x1000);
  });
});
