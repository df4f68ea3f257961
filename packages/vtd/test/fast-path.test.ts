/**
 * The caches in front of the walker: what each one keys on, what drops it, and that a
 * hit never serves what the cached rights do not allow.
 */

import { Access, createTranslation, NO_PASID } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { Fr } from "../src/format/fault-record.ts";
import { Pgtt } from "../src/format/pasid-entry.ts";
import type { Rig } from "./rig.ts";
import { rig, SID } from "./rig.ts";

const R = Access.READ;
const W = Access.WRITE;

function pa(r: Rig, sid: number, pasid: number, iova: number, access: number = R): number {
  const out = createTranslation();
  return r.hw.translate(sid, pasid, iova, access, out) ? out.pa : -(out.fault!.vendor.code ?? 1);
}

function fsRig(leaf: Parameters<Rig["fsMap"]>[3], pe: Parameters<Rig["pasidEntry"]>[1] = {}): Rig {
  const r = rig();
  const root = r.page();
  r.scalableContext();
  r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root, ...pe });
  r.fsMap(root, 4, 0x1000, { addr: 0x5000, ...leaf });
  return r;
}

describe("IOTLB entries keep user and supervisor rights apart", () => {
  it("a supervisor hit on a supervisor-only page does not serve a user request", () => {
    const r = fsRig({ us: false });
    expect(pa(r, SID, 5, 0x1000, R | Access.PRIV)).toBe(0x5000);
    expect(pa(r, SID, 5, 0x1000, R | Access.PRIV)).toBe(0x5000);
    expect(r.hw.counters().iotlbHits).toBe(1);
    expect(pa(r, SID, 5, 0x1000, R)).toBe(-Fr.FS_USER_NOT_ALLOWED);
  });

  it("a cached read of a clean page makes the first write walk again to set D", () => {
    const r = fsRig({ d: false });
    expect(pa(r, SID, 5, 0x1000, R)).toBe(0x5000);
    const walks = r.hw.counters().walks;
    expect(pa(r, SID, 5, 0x1000, R)).toBe(0x5000);
    expect(r.hw.counters().walks).toBe(walks);
    expect(pa(r, SID, 5, 0x1000, W)).toBe(0x5000);
    expect(r.hw.counters().walks).toBe(walks + 1);
    expect(pa(r, SID, 5, 0x1000, W)).toBe(0x5000);
    expect(r.hw.counters().walks).toBe(walks + 1);
  });

  it("fetches need X: an XD page cached by a read does not serve an instruction fetch", () => {
    const r = fsRig({ xd: true });
    expect(pa(r, SID, 5, 0x1000, R)).toBe(0x5000);
    expect(pa(r, SID, 5, 0x1000, R | Access.EXEC)).toBe(-Fr.NO_EXECUTE);
  });
});

describe("requests without PASID and RID_PRIV", () => {
  it("RID_PRIV makes them supervisor requests: blocked without SRE, allowed on U/S = 0 pages with it", () => {
    const blocked = rig();
    blocked.scalableContext({ ridPriv: true });
    blocked.pasidEntry(0, { pgtt: Pgtt.FIRST_STAGE, fsptptr: blocked.page(), sre: false });
    expect(pa(blocked, SID, NO_PASID, 0)).toBe(-Fr.SM_SRE_CLEAR);
    const r = rig();
    const root = r.page();
    r.scalableContext({ ridPriv: true });
    r.pasidEntry(0, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root, sre: true });
    r.fsMap(root, 4, 0x1000, { addr: 0x5000, us: false });
    // Walk, IOTLB hit, then micro-TLB hits keyed with RID_PRIV: still the supervisor rights.
    for (let k = 0; k < 4; k++) expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    expect(r.hw.counters().iotlbHits).toBe(3);
    expect(r.hw.counters().walks).toBe(1);
  });
});

describe("configuration caches", () => {
  it("a PASID-cache invalidation of the DID stops the source-id fast lane", () => {
    const r = rig();
    const a = r.page();
    r.scalableContext();
    r.pasidEntry(0, { ssptptr: a, did: 3 });
    r.ssMap(a, 4, 0x1000, { addr: 0x5000 });
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    expect(r.hw.ridKey[SID]).toBe(3 * 2 ** 20);
    r.pasidEntry(0, { present: false });
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    r.hw.invalidatePasidCache("domain", 3);
    expect(r.hw.ridKey[SID]).toBe(-1);
    // The IOTLB entry is still there, but the PASID entry is read again first.
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(-Fr.SM_PASID_NOT_PRESENT);
  });

  it("legacy domain-selective context-cache invalidation drops only that DID", () => {
    const r = rig({ mode: "legacy" });
    const root = r.page();
    r.ssMap(root, 4, 0x1000, { addr: 0x5000 });
    r.legacyContext({ slptptr: root, did: 1 }, 0x10);
    r.legacyContext({ slptptr: root, did: 2 }, 0x11);
    pa(r, 0x10, NO_PASID, 0x1000);
    pa(r, 0x11, NO_PASID, 0x1000);
    r.hw.invalidateContext("domain", 2);
    expect([...r.hw.contextCache.keys()]).toEqual([0x10]);
    expect(r.hw.ridCfg[0x11]).toBe(null);
    expect(r.hw.ridCfg[0x10]).not.toBe(null);
  });

  it("pass-through is served from the configuration, not the IOTLB", () => {
    const r = rig();
    r.scalableContext();
    r.pasidEntry(0, { pgtt: Pgtt.PASS_THROUGH });
    expect(pa(r, SID, NO_PASID, 0x1234_5000)).toBe(0x1234_5000);
    expect(pa(r, SID, NO_PASID, 0x1234_6000)).toBe(0x1234_6000);
    expect(r.hw.iotlb.size).toBe(0);
    expect(r.hw.counters().configHits).toBe(1);
    expect(pa(r, SID, NO_PASID, 2 ** 48)).toBe(-Fr.SM_BEYOND_AGAW);
  });

  it("flushAll empties every cache", () => {
    const r = rig({ mode: "legacy" });
    const root = r.page();
    r.legacyContext({ slptptr: root });
    r.ssMap(root, 4, 0x1000, { addr: 0x5000 });
    pa(r, SID, NO_PASID, 0x1000);
    r.hw.flushAll();
    expect(r.hw.iotlb.size).toBe(0);
    expect(r.hw.contextCache.size).toBe(0);
    const misses = r.hw.counters().configMisses;
    pa(r, SID, NO_PASID, 0x1000);
    expect(r.hw.counters().configMisses).toBe(misses + 1);
  });
});

describe("IOTLB capacity", () => {
  it("a full IOTLB is emptied before the next fill (QEMU's policy)", () => {
    const r = rig({ mode: "legacy", iotlbSizeLg2: 4 });
    const root = r.page();
    r.legacyContext({ slptptr: root });
    for (let i = 0; i < 13; i++) r.ssMap(root, 4, i * 4096, { addr: 0x10_0000 + i * 4096 });
    for (let i = 0; i < 12; i++) pa(r, SID, NO_PASID, i * 4096);
    expect(r.hw.iotlb.size).toBe(12);
    pa(r, SID, NO_PASID, 12 * 4096);
    expect(r.hw.iotlb.size).toBe(1);
    expect(pa(r, SID, NO_PASID, 12 * 4096 + 8)).toBe(0x10_0000 + 12 * 4096 + 8);
  });

  it("global invalidation empties the IOTLB and reports how many entries went", () => {
    const r = rig({ mode: "legacy" });
    const root = r.page();
    r.legacyContext({ slptptr: root });
    r.ssMap(root, 4, 0, { addr: 0x10_0000 });
    r.ssMap(root, 4, 0x1000, { addr: 0x10_1000 });
    pa(r, SID, NO_PASID, 0);
    pa(r, SID, NO_PASID, 0x1000);
    expect(r.hw.invalidateIotlb("global")).toBe(2);
    expect(r.hw.iotlb.size).toBe(0);
  });
});
