/**
 * Gathered invalidation (issue 16): one map or unmap call through a domain puts exactly
 * one IOTLB invalidation per tag and one wait descriptor into the queue in memory, as
 * Linux's intel_iommu_tlb_sync -> cache_tag_flush_range (drivers/iommu/intel/cache.c:
 * calculate_psi_aligned_address, cache_tag_flush_iotlb, qi_batch_flush_descs) does; and
 * the hardware model invalidates by the range that PSI encodes (spec 6.5.2.3: ADDR with
 * the low AM bits ignored, 2^AM pages).
 */

import { Access, createTranslation, Intent, NO_PASID, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { VtdBackend, VtdDomain } from "../src/backend.ts";
import { psiRange } from "../src/backend.ts";
import type { InvDescriptor } from "../src/format/inv-desc.ts";
import { decodeDescriptorHalves } from "../src/format/inv-desc.ts";
import { fresh, rewriteLeaf } from "./helpers.ts";

const DEV = 0x0108;
const AT = 0x40_0020_0000; // 2 MiB-aligned: one leaf table
const RW = Perm.R | Perm.W;

/** The descriptors the driver wrote into the queue since tail byte offset `from` (decoded from memory). */
function queued(b: VtdBackend, from: number): InvDescriptor[] {
  const hw = b.hw;
  const size = hw.descriptorBytes;
  const out: InvDescriptor[] = [];
  const halves = new Uint32Array(8);
  for (let at = from; at !== Number(hw.iqt); at = (at + size) % (hw.queueEntries * size)) {
    for (let i = 0; i < size / 4; i++) halves[i] = b.memory.read32(hw.queueBase + at + i * 4);
    const { desc, error } = decodeDescriptorHalves(halves, size / 4);
    if (desc === null) throw new Error(`bad descriptor at ${at}: ${error}`);
    out.push(desc);
  }
  return out;
}

function xl(b: VtdBackend, pasid: number, iova: number): number {
  const out = createTranslation();
  return b.translate(DEV, pasid, iova, Access.READ, out) ? out.pa : -1;
}

function ssSetup(mode: "scalable" | "legacy" = "scalable") {
  const { backend: b } = fresh({ mode });
  b.addDevice({ rid: DEV, pasidBits: mode === "scalable" ? 20 : 0 });
  const d = b.allocDomain({ type: "paging" }) as VtdDomain;
  b.attach(DEV, Intent.rid, d);
  // One page at +1 MiB keeps the leaf table in use.
  d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R);
  return { b, d };
}

/** The wait descriptor that closes every batch (SW + FN, no interrupt: qi_submit_sync). */
const WAIT = expect.objectContaining({
  type: "wait",
  sw: true,
  fn: true,
  ifl: false,
  pd: false,
}) as InvDescriptor;

describe("VT-d: one PSI and one wait per unmap (cache_tag_flush_range)", () => {
  for (const mode of ["scalable", "legacy"] as const) {
    it(`${mode}: unmap of 256 x 4K queues PSI ADDR = the 1 MiB block, AM 8, IH 1, then one wait`, () => {
      const { b, d } = ssSetup(mode);
      d.map(AT, 0x4000_0000, 256 * 4096, RW);
      const from = Number(b.hw.iqt);
      expect(d.unmap(AT, 256 * 4096)).toBe(256 * 4096);
      const descs = queued(b, from);
      expect(descs).toEqual([
        { type: "iotlb", g: 3, dr: true, dw: true, did: d.did, addr: AT, ih: true, am: 8 },
        WAIT,
      ]);
      // The wait's status write landed: the driver saw completion.
      const wait = descs[1] as Extract<InvDescriptor, { type: "wait" }>;
      expect(b.memory.read32(wait.statusAddr)).toBe(wait.statusData);
    });
  }

  it("the queue page holds the exact 32-bit halves (256-bit descriptors, upper half zero)", () => {
    const { b, d } = ssSetup();
    d.map(AT, 0x4000_0000, 256 * 4096, RW);
    const from = Number(b.hw.iqt);
    d.unmap(AT, 256 * 4096);
    const base = b.hw.queueBase + from;
    const words = Array.from({ length: 8 }, (_, i) => b.memory.read32(base + i * 4));
    // Type 2h, G 11b (5:4), DW (6), DR (7), DID 31:16; ADDR 63:12 | IH (6) | AM 8.
    expect(words).toEqual([
      (0x2 | 0x30 | 0xc0 | (d.did << 16)) >>> 0,
      0,
      (AT % 2 ** 32) | 0x40 | 8,
      0x40,
      0,
      0,
      0,
      0,
    ]);
    const w = Array.from({ length: 4 }, (_, i) => b.memory.read32(base + 32 + i * 4));
    // Wait: type 5h, SW (5), FN (6); status data 63:32; status address 127:66.
    expect(w[0]).toBe(0x65);
    expect(b.memory.read32(w[3]! * 2 ** 32 + ((w[2]! & ~3) >>> 0))).toBe(w[1]);
  });

  it("an unaligned run gets the smallest naturally aligned covering block (calculate_psi_aligned_address)", () => {
    const { b, d } = ssSetup();
    d.map(AT + 0x3000, 0x4000_0000, 3 * 4096, RW); // pages 3..5 -> block 0..7: AM 3
    const from = Number(b.hw.iqt);
    d.unmap(AT + 0x3000, 3 * 4096);
    expect(queued(b, from)[0]).toEqual({
      type: "iotlb",
      g: 3,
      dr: true,
      dw: true,
      did: d.did,
      addr: AT,
      ih: true,
      am: 3,
    });
    expect(psiRange(AT + 0x3000, 3 * 4096)).toEqual({ addr: AT, am: 3 });
    expect(psiRange(AT + 0x1000, 0x1000)).toEqual({ addr: AT + 0x1000, am: 0 });
    // Crossing a 2^n boundary doubles until both ends share the block: pages 7..8 -> 0..15.
    expect(psiRange(AT + 0x7000, 0x2000)).toEqual({ addr: AT, am: 4 });
  });

  it("an unmap that frees the leaf table clears IH (page-table pages changed)", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" }) as VtdDomain;
    b.attach(DEV, Intent.rid, d);
    d.map(AT, 0x4000_0000, 4 * 4096, RW);
    const from = Number(b.hw.iqt);
    d.unmap(AT, 4 * 4096);
    expect(queued(b, from)).toEqual([
      { type: "iotlb", g: 3, dr: true, dw: true, did: d.did, addr: AT, ih: false, am: 2 },
      WAIT,
    ]);
  });

  it("past CAP.MAMV (18) the PSI becomes one domain-selective invalidation (mask > cap_max_amask_val)", () => {
    const { b, d } = ssSetup();
    expect(b.hw.cap.mamv).toBe(18);
    const big = 0x80_0000_0000;
    d.map(big, 0x4000_0000, 2 ** 31, RW); // 2 GiB: 2^19 pages, AM 19
    const from = Number(b.hw.iqt);
    d.unmap(big, 2 ** 31);
    expect(queued(b, from)).toEqual([
      { type: "iotlb", g: 2, dr: true, dw: true, did: d.did, addr: 0, ih: false, am: 0 },
      WAIT,
    ]);
  });

  it("first stage: one PASID-based PSI per attached PASID, one wait", () => {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging", format: "vtd-fs-4lvl" }) as VtdDomain;
    b.attach(DEV, Intent.pasid(3), d);
    b.attach(DEV, Intent.pasid(9), d);
    d.map(AT + 0x10_0000, 0x1000, 0x1000, Perm.R);
    d.map(AT, 0x4000_0000, 16 * 4096, RW);
    const from = Number(b.hw.iqt);
    d.unmap(AT, 16 * 4096);
    expect(queued(b, from)).toEqual([
      { type: "pasid-iotlb", g: 3, did: d.did, pasid: 3, addr: AT, ih: true, am: 4 },
      { type: "pasid-iotlb", g: 3, did: d.did, pasid: 9, addr: AT, ih: true, am: 4 },
      WAIT,
    ]);
  });

  it("a map queues nothing without caching mode (spec 6.1), one PSI + wait with CAP.CM", () => {
    const plain = ssSetup();
    const from = Number(plain.b.hw.iqt);
    plain.d.map(AT, 0x4000_0000, 256 * 4096, RW);
    expect(queued(plain.b, from)).toEqual([]);
    const { backend: b } = fresh({ cachingMode: true });
    b.addDevice({ rid: DEV, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" }) as VtdDomain;
    b.attach(DEV, Intent.rid, d);
    const at = Number(b.hw.iqt);
    d.map(AT, 0x4000_0000, 256 * 4096, RW);
    expect(queued(b, at)).toEqual([
      { type: "iotlb", g: 3, dr: true, dw: true, did: d.did, addr: AT, ih: false, am: 8 },
      WAIT,
    ]);
  });

  it("the hardware drops exactly the PSI's block: a cached page outside it stays stale (spec 6.5.2.3)", () => {
    const { b, d } = ssSetup();
    d.map(AT, 0x4000_0000, 16 * 4096, RW);
    // Cached: a page inside the coming PSI block (page 5) and the keep-alive page outside it.
    expect(xl(b, NO_PASID, AT + 0x5000)).toBe(0x4000_5000);
    expect(xl(b, NO_PASID, AT + 0x10_0000)).toBe(0x1000);
    rewriteLeaf(d, AT + 0x5000, 0x7000_0000);
    rewriteLeaf(d, AT + 0x10_0000, 0x7100_0000);
    // Unmapping pages 0..3 issues ADDR AT, AM 2: pages 0..3 only.
    d.unmap(AT, 4 * 4096);
    expect(xl(b, NO_PASID, AT)).toBe(-1);
    expect(xl(b, NO_PASID, AT + 0x5000)).toBe(0x4000_5000);
    expect(xl(b, NO_PASID, AT + 0x10_0000)).toBe(0x1000);
    // Page 6 alone (AM 0) does not reach page 5 either.
    d.unmap(AT + 0x6000, 0x1000);
    expect(xl(b, NO_PASID, AT + 0x5000)).toBe(0x4000_5000);
    // Pages 4, 5, 7 (the block AT + 0x4000, AM 2) reach page 5, not the page at +1 MiB.
    d.unmap(AT + 0x4000, 0x4000);
    expect(xl(b, NO_PASID, AT + 0x5000)).toBe(-1);
    expect(xl(b, NO_PASID, AT + 0x10_0000)).toBe(0x1000);
  });
});
