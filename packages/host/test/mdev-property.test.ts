/**
 * Random sequences of parent / mdev adds, attach (rid, pasid, auto pasid, emulated),
 * replace, detach, map / unmap and DMA against a reference model of what each device
 * reaches: per device, the IOAS behind each attach point, and per IOAS its pages. A
 * DMA must reach exactly the page the model names (so never a page mapped only for
 * another device) or fault with nothing moved, and every refused operation must leave
 * `Host.state()` deep-equal to what it was.
 */

import { IommuError } from "@iommu-kit/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DeviceInfo, Host } from "../src/index.ts";
import { mockHost } from "./helpers.ts";

const PAGE = 0x1000;
const IOVA = 0x100000;
const SLOTS = 4;
const PA_BASE = 0x1000000;

type Target =
  | { t: "rid-ioas"; ioas: number }
  | { t: "rid-hwpt"; hwpt: number }
  | { t: "pasid"; pasid: number; hwpt: number }
  | { t: "auto"; hwpt: number }
  | { t: "emulated"; ioas: number };

type Op =
  | { op: "parent" }
  | { op: "mdev"; parent: number }
  | { op: "map"; ioas: number; slot: number }
  | { op: "unmap"; ioas: number; slot: number }
  | { op: "hwpt"; dev: number; ioas: number }
  | { op: "attach" | "replace"; dev: number; target: Target }
  | { op: "detach"; dev: number; what: "rid" | "auto" | "emulated" | number }
  | { op: "dma"; dev: number; pasid: number | null; slot: number; write: boolean };

const idx = fc.nat({ max: 7 });
const ioasIdx = fc.nat({ max: 1 });
const slot = fc.nat({ max: SLOTS - 1 });
const pasidNum = fc.integer({ min: 1, max: 3 });
const targetArb: fc.Arbitrary<Target> = fc.oneof(
  fc.record({ t: fc.constant("rid-ioas" as const), ioas: ioasIdx }),
  fc.record({ t: fc.constant("rid-hwpt" as const), hwpt: idx }),
  fc.record({ t: fc.constant("pasid" as const), pasid: pasidNum, hwpt: idx }),
  fc.record({ t: fc.constant("auto" as const), hwpt: idx }),
  fc.record({ t: fc.constant("emulated" as const), ioas: ioasIdx }),
);
const dmaArb: fc.Arbitrary<Op> = fc.record({
  op: fc.constant("dma" as const),
  dev: idx,
  pasid: fc.option(pasidNum, { nil: null }),
  slot,
  write: fc.boolean(),
});
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: dmaArb, weight: 4 },
  fc.record({ op: fc.constant("parent" as const) }),
  fc.record({ op: fc.constant("mdev" as const), parent: idx }),
  fc.record({ op: fc.constant("map" as const), ioas: ioasIdx, slot }),
  fc.record({ op: fc.constant("unmap" as const), ioas: ioasIdx, slot }),
  fc.record({ op: fc.constant("hwpt" as const), dev: idx, ioas: ioasIdx }),
  fc.record({ op: fc.constantFrom("attach" as const, "replace" as const), dev: idx, target: targetArb }),
  fc.record({
    op: fc.constant("detach" as const),
    dev: idx,
    what: fc.oneof(fc.constantFrom("rid" as const, "auto" as const, "emulated" as const), pasidNum),
  }),
);

/** What one device's attach points serve, as IOAS indices. */
interface ModelDevice {
  readonly id: number;
  /** Index of the parent in the model's device list (mdevs), else null. */
  readonly parent: number | null;
  rid: number | null;
  readonly pasids: Map<number, number>;
  emulated: number | null;
}

/** The reference model: devices, PASID-capable HWPTs, and each IOAS's pages (slot -> pa). */
class Model {
  readonly devices: ModelDevice[] = [];
  readonly hwpts: Array<{ readonly id: number; readonly ioas: number }> = [];
  readonly pages: Array<Map<number, number>> = [new Map(), new Map()];

  /** The IOAS a DMA of device `d` with `pasid` goes through, or null (it must fault). */
  route(d: ModelDevice, pasid: number | null): number | null {
    if (d.parent !== null) {
      const own = d.pasids.keys().next().value;
      if (pasid === null) return own !== undefined ? d.pasids.get(own)! : d.emulated;
      return pasid === own ? d.pasids.get(own)! : null;
    }
    if (pasid === null) return d.rid;
    const mine = d.pasids.get(pasid);
    if (mine !== undefined) return mine;
    // The parent issuing an mdev's PASID reaches that mdev's table: it is the hardware doing the mdev's DMA.
    const self = this.devices.indexOf(d);
    for (const m of this.devices) if (m.parent === self && m.pasids.has(pasid)) return m.pasids.get(pasid)!;
    return null;
  }
}

/** How often the interesting cases came up (the test proves they did). */
const seen = { reached: 0, faulted: 0, sibling: 0, parentPasid: 0, refused: 0 };

/** Runs one op on the host and the model; a refused op is checked to have changed nothing. */
function step(h: Host, model: Model, ioas: readonly number[], op: Op, nextPa: { n: number }): void {
  const dev = (i: number): ModelDevice | undefined =>
    model.devices.length === 0 ? undefined : model.devices[i % model.devices.length];
  const hwpt = (i: number) => (model.hwpts.length === 0 ? undefined : model.hwpts[i % model.hwpts.length]);
  const before = h.state();
  try {
    switch (op.op) {
      case "parent": {
        const id = h.addDevice({ iommu: "m0", rid: 0x10 + model.devices.length, pasidBits: 20 });
        model.devices.push({ id, parent: null, rid: null, pasids: new Map(), emulated: null });
        return;
      }
      case "mdev": {
        const p = dev(op.parent);
        if (p === undefined) return;
        const id = h.addMdev({ parent: p.id });
        // An mdev as parent is EINVAL (thrown above), so p is a physical device here.
        model.devices.push({
          id,
          parent: model.devices.indexOf(p),
          rid: null,
          pasids: new Map(),
          emulated: null,
        });
        return;
      }
      case "map": {
        const pa = PA_BASE + nextPa.n * PAGE;
        h.ioasMap(ioas[op.ioas]!, { iova: IOVA + op.slot * PAGE, length: PAGE, pa, prot: "rw" });
        nextPa.n++;
        model.pages[op.ioas]!.set(op.slot, pa);
        return;
      }
      case "unmap":
        h.ioasUnmap(ioas[op.ioas]!, IOVA + op.slot * PAGE, PAGE);
        model.pages[op.ioas]!.delete(op.slot);
        return;
      case "hwpt": {
        const d = dev(op.dev);
        if (d === undefined) return;
        const id = h.hwptAlloc({ device: d.id, pt: ioas[op.ioas]!, flags: ["pasid"] });
        model.hwpts.push({ id, ioas: op.ioas });
        return;
      }
      case "attach":
      case "replace": {
        const d = dev(op.dev);
        if (d === undefined) return;
        const tg = op.target;
        const fn = op.op === "attach" ? h.attach.bind(h) : h.replace.bind(h);
        if (tg.t === "rid-ioas" || tg.t === "emulated") {
          fn(d.id, tg.t === "rid-ioas" ? "rid" : "emulated", ioas[tg.ioas]!);
          if (tg.t === "rid-ioas") d.rid = tg.ioas;
          else d.emulated = tg.ioas;
          return;
        }
        const hw = hwpt(tg.hwpt);
        if (hw === undefined) return;
        if (tg.t === "rid-hwpt") {
          fn(d.id, "rid", hw.id);
          d.rid = hw.ioas;
        } else if (tg.t === "pasid") {
          fn(d.id, { pasid: tg.pasid }, hw.id);
          d.pasids.set(tg.pasid, hw.ioas);
        } else {
          const got = fn(d.id, { pasid: "auto" }, hw.id).pasid!;
          d.pasids.clear();
          d.pasids.set(got, hw.ioas);
        }
        return;
      }
      case "detach": {
        const d = dev(op.dev);
        if (d === undefined) return;
        const w = op.what;
        h.detach(d.id, typeof w === "number" ? { pasid: w } : w === "auto" ? { pasid: "auto" } : w);
        if (w === "rid") d.rid = null;
        else if (w === "emulated") d.emulated = null;
        else if (w === "auto") {
          // On a caller-assigned device the host takes "auto" as its first PASID.
          const first = d.pasids.keys().next().value;
          if (first !== undefined) d.pasids.delete(first);
        } else d.pasids.delete(w);
        return;
      }
      case "dma": {
        const d = dev(op.dev);
        if (d === undefined) return;
        const via = model.route(d, op.pasid);
        const want = via === null ? undefined : model.pages[via]!.get(op.slot);
        const iova = IOVA + op.slot * PAGE;
        const data = new Uint8Array([op.slot + 1, nextPa.n & 0xff, 0xa5, 0x5a]);
        const r = op.write
          ? h.dma(d.id, { pasid: op.pasid, iova, access: "write", data })
          : h.dma(d.id, { pasid: op.pasid, iova, access: "read", length: 4 });
        const own = d.pasids.keys().next().value;
        if (d.parent !== null && op.pasid !== null && op.pasid !== own) {
          const sib = model.devices.some((m) => m !== d && m.parent === d.parent && m.pasids.has(op.pasid!));
          if (sib) seen.sibling++;
        }
        if (d.parent === null && op.pasid !== null && want !== undefined) seen.parentPasid++;
        if (want === undefined) {
          seen.faulted++;
          expect(r.ok, `device ${d.id} pasid ${op.pasid} slot ${op.slot} must fault`).toBe(false);
          expect(h.faultsRead().length).toBe(1);
          expect(h.state()).toEqual(before);
        } else {
          seen.reached++;
          expect(r, `device ${d.id} pasid ${op.pasid} slot ${op.slot}`).toMatchObject({ ok: true, pa: want });
          if (op.write) expect(h.memRead(want, 4)).toEqual(data);
        }
        return;
      }
    }
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
    seen.refused++;
    expect(h.state(), `${JSON.stringify(op)} refused with ${e.code}`).toEqual(before);
  }
}

/** The host's PASIDs per device agree with the model's. */
function agree(h: Host, model: Model): void {
  for (const d of model.devices) {
    const info = h.describe(d.id) as DeviceInfo;
    expect(info.pasids.map(([p]) => p)).toEqual([...d.pasids.keys()].sort((a, b) => a - b));
  }
}

describe("mdevs and parents vs a reachability model", () => {
  // About 30 s of CPU: more than the 60 s default allows on a loaded 2-core machine.
  it("no device reaches a page mapped only for another; refused operations change nothing", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), (ops) => {
        const h = mockHost();
        const ioas = [h.ioasAlloc(), h.ioasAlloc()];
        const model = new Model();
        const nextPa = { n: 0 };
        // Two parents, two mdevs on the first, each by PASID on its own IOAS with pages
        // mapped: sibling PASIDs are in play from the first random op on.
        const prelude: Op[] = [
          { op: "parent" },
          { op: "parent" },
          { op: "mdev", parent: 0 },
          { op: "mdev", parent: 0 },
          { op: "map", ioas: 0, slot: 0 },
          { op: "map", ioas: 0, slot: 1 },
          { op: "map", ioas: 1, slot: 0 },
          { op: "map", ioas: 1, slot: 1 },
          { op: "hwpt", dev: 2, ioas: 0 },
          { op: "hwpt", dev: 3, ioas: 1 },
          { op: "attach", dev: 2, target: { t: "auto", hwpt: 0 } },
          { op: "attach", dev: 3, target: { t: "auto", hwpt: 1 } },
          // The parent's own PASID 3 beside its mdevs' 1 and 2.
          { op: "hwpt", dev: 0, ioas: 1 },
          { op: "attach", dev: 0, target: { t: "pasid", pasid: 3, hwpt: 2 } },
        ];
        for (const op of [...prelude, ...ops]) {
          step(h, model, ioas, op, nextPa);
          agree(h, model);
        }
      }),
      { numRuns: 80 },
    );
    expect(seen.reached).toBeGreaterThan(0);
    expect(seen.faulted).toBeGreaterThan(0);
    expect(seen.sibling).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
    expect(seen.parentPasid).toBeGreaterThan(0);
  }, 180_000);
});
