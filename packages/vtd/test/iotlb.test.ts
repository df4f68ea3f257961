/** VT-d's use of core's IOTLB: the tag scheme, the meta word and the spec's invalidation scopes. */

import { IotlbMeta } from "@iommu-kit/core/driver";
import { describe, expect, it } from "vitest";
import {
  createIotlb,
  fillMeta,
  invalidateIotlb,
  invalidatePasidIotlb,
  Meta,
  microKey,
  microMeta,
  PASID_SPAN,
} from "../src/iotlb.ts";
import { Kind } from "../src/walk.ts";

const tag = (did: number, pasid: number) => did * PASID_SPAN + pasid;

describe("VT-d IOTLB", () => {
  it("restates core's leaf-size field and marks nested entries SCAN", () => {
    expect(Meta.SIZE_SHIFT).toBe(IotlbMeta.SIZE_SHIFT);
    const m = fillMeta(3, 5, true, Kind.NESTED, 21);
    expect(m & 7).toBe(3);
    expect((m >>> Meta.SUP_SHIFT) & 7).toBe(5);
    expect(m & Meta.WRITE_WALK).toBe(Meta.WRITE_WALK);
    expect((m >>> Meta.KIND_SHIFT) & 7).toBe(Kind.NESTED);
    expect(m >>> Meta.SIZE_SHIFT).toBe(21);
    expect(m & IotlbMeta.SCAN).toBe(IotlbMeta.SCAN);
    expect(fillMeta(3, 3, false, Kind.SECOND_STAGE, 12) & IotlbMeta.SCAN).toBe(0);
    // The micro-TLB holds the rights of one privilege in 2:0, under a key with RID_PRIV folded in.
    expect(microMeta(m, true) & 7).toBe(5);
    expect(microMeta(m, false) & 7).toBe(3);
    expect(microMeta(m, true) >>> Meta.SIZE_SHIFT).toBe(21);
    expect(microKey(tag(2, 0), true)).toBe(tag(2, 0) + 0.5);
  });

  it("page-selective IOTLB invalidation: covering second-stage and every nested entry of the DID (6.5.2.3)", () => {
    const t = createIotlb(8);
    t.insert(tag(1, 0), 0x10, 0x10_000, fillMeta(3, 3, false, Kind.SECOND_STAGE, 12));
    t.insert(tag(1, 0), 0x11, 0x11_000, fillMeta(3, 3, false, Kind.SECOND_STAGE, 12));
    t.insert(tag(1, 5), 0x900, 0x90_000, fillMeta(3, 3, false, Kind.NESTED, 12));
    t.insert(tag(1, 6), 0x10, 0x20_000, fillMeta(3, 3, false, Kind.FIRST_STAGE, 12));
    t.insert(tag(2, 0), 0x10, 0x30_000, fillMeta(3, 3, false, Kind.SECOND_STAGE, 12));
    expect(invalidateIotlb(t, "page", 1, 0x10_000, 0)).toBe(2);
    expect(t.lookup(tag(1, 0), 0x10)).toBe(-1);
    expect(t.lookup(tag(1, 5), 0x900)).toBe(-1);
    expect(t.lookup(tag(1, 6), 0x10)).toBeGreaterThanOrEqual(0);
    expect(t.lookup(tag(2, 0), 0x10)).toBeGreaterThanOrEqual(0);
    expect(invalidatePasidIotlb(t, "page", 1, 6, 0x10_000, 0)).toBe(1);
    expect(invalidatePasidIotlb(t, "pasid", 1, 0, 0, 0)).toBe(0); // second-stage entries stay
    expect(invalidateIotlb(t, "domain", 1, 0, 0)).toBe(1);
    expect(invalidateIotlb(t, "global", 0, 0, 0)).toBe(1);
    expect(t.size).toBe(0);
  });
});
