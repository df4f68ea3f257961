/**
 * Atomicity under random failure injection: a host and its twin run the same random
 * operation sequence; the host's every operation is first run with an allocation point
 * armed to fail. A failed run must leave the host exactly as before (objects, table
 * blocks, memory), and after the retry both hosts must agree (results, errors, objects).
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Host } from "../src/index.ts";
import { mockHost } from "./helpers.ts";

type Step =
  | { op: "map"; io: number; page: number; pages: number; auto: boolean }
  | { op: "unmap"; io: number; page: number; pages: number }
  | { op: "attach" | "replace"; dev: number; io: number; hwpt: number; useHwpt: boolean }
  | { op: "detach"; dev: number }
  | { op: "hwpt"; dev: number; io: number; pasid: boolean }
  | { op: "pasid"; pasid: number; hwpt: number; replace: boolean }
  | { op: "unpasid"; pasid: number }
  | { op: "destroy"; hwpt: number }
  | { op: "copy"; page: number; pages: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    op: fc.constant("map" as const),
    io: fc.integer({ min: 0, max: 1 }),
    page: fc.integer({ min: 0, max: 1024 }),
    pages: fc.integer({ min: 1, max: 600 }),
    auto: fc.boolean(),
  }),
  fc.record({
    op: fc.constant("unmap" as const),
    io: fc.integer({ min: 0, max: 1 }),
    page: fc.integer({ min: 0, max: 1024 }),
    pages: fc.integer({ min: 1, max: 2048 }),
  }),
  fc.record({
    op: fc.constantFrom("attach" as const, "replace" as const),
    dev: fc.integer({ min: 0, max: 1 }),
    io: fc.integer({ min: 0, max: 1 }),
    hwpt: fc.nat(),
    useHwpt: fc.boolean(),
  }),
  fc.record({ op: fc.constant("detach" as const), dev: fc.integer({ min: 0, max: 1 }) }),
  fc.record({
    op: fc.constant("hwpt" as const),
    dev: fc.integer({ min: 0, max: 1 }),
    io: fc.integer({ min: 0, max: 1 }),
    pasid: fc.boolean(),
  }),
  fc.record({
    op: fc.constant("pasid" as const),
    pasid: fc.integer({ min: 1, max: 3 }),
    hwpt: fc.nat(),
    replace: fc.boolean(),
  }),
  fc.record({ op: fc.constant("unpasid" as const), pasid: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ op: fc.constant("destroy" as const), hwpt: fc.nat() }),
  fc.record({
    op: fc.constant("copy" as const),
    page: fc.integer({ min: 0, max: 2000 }),
    pages: fc.integer({ min: 1, max: 64 }),
  }),
);

interface World {
  h: Host;
  devs: number[];
  ioas: number[];
  hwpts: number[];
}

function world(): World {
  const h = mockHost();
  const devs = [h.addDevice({ iommu: "m0", rid: 1, pasidBits: 8 }), h.addDevice({ iommu: "m1", rid: 1 })];
  const ioas = [h.ioasAlloc(), h.ioasAlloc()];
  // Two domains (two IOMMUs) on the first IOAS from the start.
  h.attach(devs[0]!, "rid", ioas[0]!);
  h.attach(devs[1]!, "rid", ioas[0]!);
  return { h, devs, ioas, hwpts: [] };
}

function run(w: World, s: Step): unknown {
  const { h, devs, ioas, hwpts } = w;
  const pick = (i: number) => (hwpts.length === 0 ? -1 : hwpts[i % hwpts.length]!);
  switch (s.op) {
    case "map":
      return h.ioasMap(ioas[s.io]!, {
        ...(s.auto ? {} : { iova: 0x40000000 + s.page * 0x1000 }),
        length: s.pages * 0x1000,
        pa: 0x1000000 + s.page * 0x1000,
        prot: "rw",
      });
    case "unmap":
      return h.ioasUnmap(ioas[s.io]!, 0x40000000 + s.page * 0x1000, s.pages * 0x1000);
    case "attach":
    case "replace": {
      const pt = s.useHwpt ? pick(s.hwpt) : ioas[s.io]!;
      return s.op === "attach" ? h.attach(devs[s.dev]!, "rid", pt) : h.replace(devs[s.dev]!, "rid", pt);
    }
    case "detach":
      return h.detach(devs[s.dev]!, "rid");
    case "hwpt": {
      const id = h.hwptAlloc({ device: devs[s.dev]!, pt: ioas[s.io]!, flags: s.pasid ? ["pasid"] : [] });
      hwpts.push(id);
      return id;
    }
    case "pasid":
      return s.replace
        ? h.replace(devs[0]!, { pasid: s.pasid }, pick(s.hwpt))
        : h.attach(devs[0]!, { pasid: s.pasid }, pick(s.hwpt));
    case "unpasid":
      return h.detach(devs[0]!, { pasid: s.pasid });
    case "destroy":
      return h.destroy(pick(s.hwpt));
    case "copy":
      return h.ioasCopy({
        src: ioas[0]!,
        srcIova: 0x40000000 + s.page * 0x1000,
        dst: ioas[1]!,
        length: s.pages * 0x1000,
        prot: "r",
      });
  }
}

function outcome(w: World, s: Step): unknown {
  try {
    return { ok: run(w, s) ?? null };
  } catch (e) {
    return { err: (e as { code?: string }).code ?? String(e) };
  }
}

/** Objects without the backends' own domain numbers (consumed by failed allocations). */
function objects(h: Host): unknown {
  return h.objects().map((o) => (o.kind === "device" ? { ...o, backendRid: null } : o));
}

describe("atomicity under random failure injection", () => {
  it("a failed run changes nothing; after the retry host and twin agree", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(stepArb, fc.integer({ min: 1, max: 5 })), { minLength: 1, maxLength: 20 }),
        (steps) => {
          const w = world();
          const twin = world();
          for (const [s, n] of steps) {
            const before = w.h.state();
            w.h.failNth.arm(n);
            const hwptsBefore = w.hwpts.length;
            let first: unknown;
            try {
              first = outcome(w, s);
            } finally {
              w.h.failNth.disarm();
            }
            if ((first as { err?: string }).err === "ENOMEM") {
              expect(w.h.state()).toEqual(before);
              w.hwpts.length = hwptsBefore;
              first = outcome(w, s);
            }
            expect(first).toEqual(outcome(twin, s));
            expect(objects(w.h)).toEqual(objects(twin.h));
            expect(w.h.tables.stats()).toEqual(twin.h.tables.stats());
          }
        },
      ),
      { numRuns: 80 },
    );
  });
});
