import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SmmuTlb, tlbTag } from "../src/index.ts";

function filled() {
  const t = new SmmuTlb(8);
  // (VMID 1, ASID 5) non-global, (1, 6) global, (1, S2-only), (2, ASID 5)
  t.insert(tlbTag(1, 5), 0x1000, 0xa000, 3, 1, 12, false);
  t.insert(tlbTag(1, 6), 0x2000, 0xb000, 3, 1, 12, true);
  t.insert(tlbTag(1, -1), 0x3000, 0xc000, 3, 3, 21, false);
  t.insert(tlbTag(2, 5), 0x1000, 0xd000, 3, 1, 12, false);
  return t;
}

const has = (t: SmmuTlb, vmid: number, asid: number, iova: number) => t.lookup(tlbTag(vmid, asid), iova) >= 0;

describe("SmmuTlb invalidation scopes (IHI 0070 4.4)", () => {
  it("tags separate VMIDs, ASIDs and stage-2-only entries; hits return the page's PA and packed perms", () => {
    const t = filled();
    const slot = t.lookup(tlbTag(1, 5), 0x1abc);
    expect(t.iotlb.pa(slot)).toBe(0xa000);
    expect(t.iotlb.meta(slot) & 0xff).toBe(3 | (1 << 4));
    expect(has(t, 1, 5, 0x1000)).toBe(true);
    expect(has(t, 1, 7, 0x1000)).toBe(false);
    expect(has(t, 2, 5, 0x1000)).toBe(true);
    expect(has(t, 1, -1, 0x3000)).toBe(true);
  });

  it("TLBI_NH_ASID keeps global entries and other VMIDs", () => {
    const t = filled();
    expect(t.invalidateAsid(1, 5)).toBe(1);
    expect(t.invalidateAsid(1, 6)).toBe(0);
    expect([has(t, 1, 5, 0x1000), has(t, 1, 6, 0x2000), has(t, 2, 5, 0x1000)]).toEqual([false, true, true]);
  });

  it("TLBI_NH_VA drops that ASID's and global entries covering the range; VAA every ASID's", () => {
    const t = filled();
    expect(t.invalidateVa(1, 9, 0x2000, 1)).toBe(1); // the global one
    expect(t.invalidateVa(1, 9, 0x1000, 1)).toBe(0); // ASID 5 is not ASID 9
    expect(t.invalidateVa(1, -1, 0x1000, 0x2000)).toBe(1);
    expect(has(t, 2, 5, 0x1000)).toBe(true);
  });

  it("TLBI_S2_IPA drops stage-2-only leaves covering the IPA (a 2M leaf from any of its pages)", () => {
    const t = filled();
    expect(t.invalidateIpa(1, 0x1f_0000, 0x1000)).toBe(1);
    expect(t.invalidateIpa(1, 0x1000, 0x1000)).toBe(0);
  });

  it("TLBI_NH_ALL keeps stage-2-only entries; TLBI_S12_VMALL drops the VMID; NSNH_ALL everything", () => {
    let t = filled();
    expect(t.invalidateNhAll(1)).toBe(2);
    expect(has(t, 1, -1, 0x3000)).toBe(true);
    t = filled();
    expect(t.invalidateVmid(1)).toBe(3);
    expect(t.size).toBe(1);
    expect(t.clear()).toBe(1);
    expect(t.size).toBe(0);
  });
});

describe("SmmuTlb range invalidation against a reference model", () => {
  it("TLBI_NH_VA / NH_VAA / S2_IPA drop exactly the covering entries in scope, probing or scanning (property)", () => {
    interface E {
      vmid: number;
      asid: number;
      page: number;
      sizeLg2: number;
      global: boolean;
    }
    const entry = fc.record({
      vmid: fc.integer({ min: 0, max: 2 }),
      asid: fc.integer({ min: -1, max: 2 }),
      page: fc.integer({ min: 0, max: 1023 }),
      // Mostly 4K and non-global, so many VMIDs and tags take the page-probing path.
      sizeLg2: fc.constantFrom(12, 12, 12, 12, 12, 21),
      global: fc.constantFrom(false, false, false, false, false, false, false, true),
    });
    const op = fc.oneof(
      fc.record({ k: fc.constant("ins" as const), e: entry }),
      fc.record({
        k: fc.constantFrom("va" as const, "ipa" as const),
        vmid: fc.integer({ min: 0, max: 2 }),
        asid: fc.integer({ min: -1, max: 2 }),
        at: fc.integer({ min: 0, max: 4 * 2 ** 20 }),
        length: fc.integer({ min: 1, max: 100 * 4096 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const t = new SmmuTlb(10);
        const ref = new Map<string, E>();
        const key = (vmid: number, asid: number, page: number) => `${tlbTag(vmid, asid)}:${page}`;
        for (const o of ops) {
          if (o.k === "ins") {
            const e = { ...o.e, global: o.e.global && o.e.asid >= 0 };
            t.insert(tlbTag(e.vmid, e.asid), e.page * 4096, e.page * 4096, 3, 1, e.sizeLg2, e.global);
            ref.set(key(e.vmid, e.asid, e.page), e);
            continue;
          }
          let want = 0;
          for (const [k, e] of [...ref]) {
            const size = 2 ** e.sizeLg2;
            const base = Math.floor((e.page * 4096) / size) * size;
            const covers = base < o.at + o.length && base + size > o.at;
            const inScope =
              o.k === "ipa"
                ? e.vmid === o.vmid && e.asid === -1
                : e.vmid === o.vmid && e.asid >= 0 && (o.asid < 0 || e.asid === o.asid || e.global);
            if (inScope && covers) {
              ref.delete(k);
              want++;
            }
          }
          const got =
            o.k === "ipa"
              ? t.invalidateIpa(o.vmid, o.at, o.length)
              : t.invalidateVa(o.vmid, o.asid, o.at, o.length);
          expect(got).toBe(want);
          expect(t.size).toBe(ref.size);
        }
        for (const e of ref.values()) expect(has(t, e.vmid, e.asid, e.page * 4096)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
