/**
 * Hostile arguments to every public `Host` method (issue 15): a call either succeeds or
 * throws an `IommuError` (never a RangeError / TypeError from a typed array or a
 * backend's field packing), and a refused call leaves `state()` (objects, table
 * blocks, every non-zero memory page) exactly as it was. DMA faults stay returned values.
 */

import { isDeepStrictEqual } from "node:util";
import { Access, BackendRegistry, IommuError } from "@iommu-kit/core";
import { mockBackend } from "@iommu-kit/core/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { IntentSpec } from "../src/index.ts";
import { Host } from "../src/index.ts";
import { MAX_TRANSFER } from "../src/io-pagetable.ts";

const PAGE = 0x1000;
/** RAM [0, 64 MiB), tables [64 MiB, +16 MiB): small so `state()` stays cheap. */
const RAM = 2 ** 26;

/** The hostile numbers of the issue, plus some that are merely out of range. */
const HOSTILE = [
  -4096,
  -1,
  1.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  2 ** 16,
  2 ** 20,
  2 ** 32,
  2 ** 52,
  2 ** 53,
  2 ** 64,
  Number.MAX_SAFE_INTEGER,
  -0,
] as const;

interface World {
  readonly h: Host;
  /** Valid-looking numbers: ids (live and destroyed), IOVAs, PAs, lengths. */
  readonly valid: readonly number[];
}

/** One registry for every world: the vendor backends are imported once. */
const registry = new BackendRegistry();
registry.register(mockBackend);
let loaded = false;

async function world(): Promise<World> {
  const h = new Host({ registry, ram: [{ base: 0, size: RAM }], tables: { base: RAM, size: 2 ** 24 } });
  if (!loaded) for (const b of ["smmuv3", "vtd", "mdev-emulated"]) await h.loadBackend(b);
  loaded = true;
  h.addIommu("smmu0", "smmuv3");
  h.addIommu("dmar0", "vtd");
  const s = h.addDevice({ iommu: "smmu0", rid: 0x10, pasidBits: 20 });
  const v = h.addDevice({ iommu: "dmar0", rid: 0x100, pasidBits: 20 });
  const m = h.addMdev({ parent: s });
  const ioas = h.ioasAlloc();
  const iova = h.ioasMap(ioas, { iova: 0x100000, length: 0x10000, pa: 0x200000, prot: "rw" });
  h.memWrite(0x200000, new Uint8Array(64).fill(0xa5));
  const ioas2 = h.ioasAlloc();
  const fq = h.faultQueueAlloc();
  const hwpt = h.hwptAlloc({ device: v, pt: ioas, flags: ["dirty_tracking"] });
  h.attach(s, "rid", ioas);
  h.attach(v, "rid", hwpt);
  h.attach(m, "emulated", ioas2);
  // Nesting on both vendors: an SMMUv3 bypass STE, a VT-d first stage at GPA 0x10000.
  // SMMUv3 nests on a vIOMMU (arm_vsmmu_alloc_domain_nested), with a vDEVICE and a vEVENTQ.
  const sp = h.hwptAlloc({ device: s, pt: ioas, flags: ["nest_parent"] });
  const vi = h.viommuAlloc({ device: s, hwpt: sp, type: "arm-smmuv3" });
  const vd = h.vdeviceAlloc({ viommu: vi, device: s, virtId: 0x99 });
  const vq = h.veventqAlloc({ viommu: vi, type: "arm-smmuv3", depth: 4 });
  const sn = h.hwptAlloc({ device: s, pt: vi, data: { ste: ["0x9", "0x0"] } });
  const vp = h.hwptAlloc({ device: v, pt: ioas, flags: ["nest_parent"] });
  const vn = h.hwptAlloc({ device: v, pt: vp, data: { pgtblAddr: "0x10000", addrWidth: 48 } });
  const dead = h.ioasAlloc();
  h.destroy(dead);
  return {
    h,
    valid: [
      s,
      v,
      m,
      ioas,
      ioas2,
      fq,
      hwpt,
      dead,
      sp,
      sn,
      vp,
      vn,
      vi,
      vd,
      vq,
      0,
      iova,
      iova + PAGE,
      0x200000,
      PAGE,
      16,
    ],
  };
}

type Call = (h: Host, n: () => number, b: boolean) => unknown;

const intent = (n: () => number, b: boolean): IntentSpec => {
  const k = n();
  if (Number.isNaN(k)) return "rid-all-pasids";
  if (k === 0) return b ? "rid" : "emulated";
  return b ? { pasid: n() } : { pasid: "auto" };
};

/** One entry per public method (loadBackend is async and takes names only). */
const CALLS: Record<string, Call> = {
  addIommu: (h, n) => h.addIommu(`x${n()}`, "mock"),
  iommu: (h, _n, b) => h.iommu(b ? "smmu0" : "nope"),
  iommus: (h) => h.iommus(),
  counters: (h, _n, b) => h.counters(b ? "dmar0" : "smmu0"),
  addDevice: (h, n, b) => h.addDevice({ iommu: b ? "smmu0" : "dmar0", rid: n(), pasidBits: n() }),
  addMdev: (h, n, b) => h.addMdev(b ? { parent: n() } : { parent: n(), rid: n() }),
  deviceIds: (h) => h.deviceIds(),
  hwInfo: (h, n) => h.hwInfo(n()),
  ioasAlloc: (h) => h.ioasAlloc(),
  ioasMap: (h, n, b) =>
    h.ioasMap(n(), b ? { iova: n(), length: n(), pa: n(), prot: "rw" } : { length: n(), pa: n(), prot: "r" }),
  ioasUnmap: (h, n) => h.ioasUnmap(n(), n(), n()),
  ioasUnmapAll: (h, n) => h.ioasUnmapAll(n()),
  ioasCopy: (h, n, b) =>
    h.ioasCopy({ src: n(), srcIova: n(), dst: n(), length: n(), prot: "r", ...(b ? { dstIova: n() } : {}) }),
  ioasIovaRanges: (h, n) => h.ioasIovaRanges(n()),
  ioasReserve: (h, n) => h.ioasReserve(n(), { start: n(), last: n() }),
  ioasCutIova: (h, n) => h.ioasCutIova(n(), [n()]),
  ioasSetLargePages: (h, n, b) => h.ioasSetLargePages(n(), b),
  ioasAllowIovas: (h, n) => h.ioasAllowIovas(n(), [{ start: n(), last: n() }]),
  ioasAreas: (h, n) => h.ioasAreas(n()),
  hwptAlloc: (h, n, b) => h.hwptAlloc({ device: n(), pt: n(), flags: b ? ["pasid"] : [], faultQueue: n() }),
  hwptAllocNested: (h, n, b) =>
    h.hwptAlloc({
      device: n(),
      pt: n(),
      data: b ? { ste: [n(), n()] } : { pgtblAddr: n(), addrWidth: n(), flags: n() },
    }),
  attach: (h, n, b) => h.attach(n(), intent(n, b), n()),
  replace: (h, n, b) => h.replace(n(), intent(n, b), n()),
  detach: (h, n, b) => h.detach(n(), intent(n, b)),
  destroy: (h, n) => h.destroy(n()),
  dma: (h, n, b) =>
    b
      ? h.dma(n(), { pasid: n(), iova: n(), access: "read", length: n() })
      : h.dma(n(), { iova: n(), access: "write", data: new Uint8Array(16).fill(7) }),
  dmaInto: (h, n, b) =>
    h.dmaInto(n(), b ? null : n(), n(), b ? Access.READ : Access.WRITE, new Uint8Array(16)),
  faultsRead: (h, n) => h.faultsRead(n()),
  faultQueueAlloc: (h) => h.faultQueueAlloc(),
  faultQueueRead: (h, n, b) => (b ? h.faultQueueRead(n()) : h.faultQueueRead(n(), n())),
  faultRespond: (h, n, b) => h.faultRespond(n(), { cookie: n(), code: b ? "success" : "invalid" }),
  viommuAlloc: (h, n, b) => h.viommuAlloc({ device: n(), hwpt: n(), type: b ? "arm-smmuv3" : "selftest" }),
  vdeviceAlloc: (h, n) => h.vdeviceAlloc({ viommu: n(), device: n(), virtId: n() }),
  veventqAlloc: (h, n, b) => h.veventqAlloc({ viommu: n(), type: b ? "arm-smmuv3" : "default", depth: n() }),
  veventqRead: (h, n, b) => (b ? h.veventqRead(n()) : h.veventqRead(n(), n())),
  invalidateViommu: (h, n) => h.invalidate(n(), [[n(), n()]]),
  invalidate: (h, n, b) => h.invalidate(n(), [b ? { cmd: [n(), n()] } : { addr: n(), npages: n() }]),
  dirtySet: (h, n, b) => h.dirtySet(n(), b),
  dirtyRead: (h, n, b) => h.dirtyRead(n(), { iova: n(), length: n(), pageSize: n(), noClear: b }),
  accessPin: (h, n, b) => h.accessPin(n(), n(), n(), b),
  accessUnpin: (h, n) => h.accessUnpin(n(), n(), n()),
  accessRw: (h, n, b) =>
    b
      ? h.accessRw(n(), { iova: n(), length: n(), write: false })
      : h.accessRw(n(), { iova: n(), data: new Uint8Array(8).fill(3), write: true }),
  memWrite: (h, n) => h.memWrite(n(), new Uint8Array(8).fill(9)),
  memRead: (h, n) => h.memRead(n(), n()),
  explain: (h, n, b) => h.explain(n(), { pasid: b ? null : n(), iova: n(), access: "read" }),
  dump: (h, n) => h.dump(n()),
  describe: (h, n) => h.describe(n()),
  objects: (h) => h.objects(),
  state: (h) => h.state(),
};
const NAMES = Object.keys(CALLS);

/** How calls ended, so the property is seen to exercise both outcomes. */
const outcomes = { ok: 0, refused: 0 };

/** A call is refused with an IommuError or succeeds; a refusal changes nothing; none is slow. */
function run(w: World, name: string, args: readonly number[], b: boolean): void {
  const h = w.h;
  let i = 0;
  const n = (): number => {
    const a = args[i++ % args.length]!;
    return a >= 0 && a < 100 ? w.valid[a % w.valid.length]! : HOSTILE[(-a - 1) % HOSTILE.length]!;
  };
  const before = h.state();
  const t0 = performance.now();
  try {
    CALLS[name]!(h, n, b);
    outcomes.ok++;
  } catch (e) {
    if (!(e instanceof IommuError)) {
      throw new Error(`${name}(${args.map((_, k) => String(args[k])).join(", ")}) threw ${String(e)}`, {
        cause: e,
      });
    }
    outcomes.refused++;
    // node's deep equality: vitest's toEqual takes ~200 ms on a few pages of memory.
    if (!isDeepStrictEqual(h.state(), before)) {
      expect(h.state(), `${name} refused with ${e.code} but changed state`).toEqual(before);
    }
  }
  const dt = performance.now() - t0;
  expect(dt, `${name} took too long`).toBeLessThan(2000);
}

/** An argument: 0..99 picks a valid value, -1..-14 a hostile one. */
const arg = fc.oneof(fc.integer({ min: 0, max: 99 }), fc.integer({ min: -HOSTILE.length, max: -1 }));
const callArb = fc.record({
  name: fc.constantFrom(...NAMES),
  args: fc.array(arg, { minLength: 1, maxLength: 6 }),
  b: fc.boolean(),
});

describe("hostile calls to every Host method", () => {
  it("succeed or throw IommuError with state unchanged (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(callArb, { minLength: 1, maxLength: 40 }), async (calls) => {
        const w = await world();
        for (const c of calls) run(w, c.name, c.args, c.b);
      }),
      { numRuns: 400, interruptAfterTimeLimit: 4000 },
    );
    expect(outcomes.ok).toBeGreaterThan(100);
    expect(outcomes.refused).toBeGreaterThan(100);
  }, 30000);

  it("every method is in the property's table", () => {
    const methods = Object.getOwnPropertyNames(Host.prototype).filter(
      (k) => k !== "constructor" && k !== "loadBackend" && k !== "failNth",
    );
    expect(NAMES.filter((k) => k !== "hwptAllocNested" && k !== "invalidateViommu").sort()).toEqual(
      methods.sort(),
    );
  });
});

describe("the three cases of issue 15", () => {
  const cases: ReadonlyArray<{
    name: string;
    call: (w: World) => unknown;
    code: string;
    field: string;
  }> = [
    {
      name: "attach PASID 2^20",
      call: (w) => w.h.attach(w.valid[0]!, { pasid: 2 ** 20 }, w.valid[6]!),
      code: "EINVAL",
      field: "pasid",
    },
    {
      name: "dma at IOVA -4096",
      call: (w) => w.h.dma(w.valid[0]!, { iova: -4096, access: "read", length: 16 }),
      code: "EINVAL",
      field: "iova",
    },
    {
      name: "dmaInto at IOVA -4096",
      call: (w) => w.h.dmaInto(w.valid[0]!, null, -4096, Access.READ, new Uint8Array(16)),
      code: "EINVAL",
      field: "iova",
    },
    { name: "memRead of 2^53 bytes", call: (w) => w.h.memRead(0, 2 ** 53), code: "EINVAL", field: "length" },
    {
      name: "dma with PASID 2^20",
      call: (w) => w.h.dma(w.valid[0]!, { pasid: 2 ** 20, iova: 0x100000, access: "read", length: 16 }),
      code: "EINVAL",
      field: "pasid",
    },
    {
      name: "dmaInto with PASID 2^53",
      call: (w) => w.h.dmaInto(w.valid[0]!, 2 ** 53, 0x100000, Access.READ, new Uint8Array(16)),
      code: "EINVAL",
      field: "pasid",
    },
    {
      name: "explain at IOVA 1.5",
      call: (w) => w.h.explain(w.valid[0]!, { iova: 1.5, access: "read" }),
      code: "EINVAL",
      field: "iova",
    },
    {
      name: "dirtyRead of 2^52 one-byte pages",
      call: (w) => w.h.dirtyRead(w.valid[6]!, { iova: 0, length: 2 ** 52, pageSize: 1 }),
      code: "E2BIG",
      field: "length",
    },
    {
      name: "accessRw read of 2^53 - 1 bytes",
      call: (w) => w.h.accessRw(w.valid[2]!, { iova: 0, length: 2 ** 53 - 1, write: false }),
      code: "E2BIG",
      field: "length",
    },
    {
      name: "memRead beyond MAX_TRANSFER",
      call: (w) => w.h.memRead(0, MAX_TRANSFER + 1),
      code: "E2BIG",
      field: "length",
    },
    {
      name: "memRead of 2^53 - 1 bytes",
      call: (w) => w.h.memRead(0, 2 ** 53 - 1),
      code: "E2BIG",
      field: "length",
    },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.code} naming ${c.field}, nothing changed`, async () => {
      const w = await world();
      const before = w.h.state();
      let err: unknown;
      try {
        c.call(w);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(IommuError);
      expect((err as IommuError).code).toBe(c.code);
      expect((err as IommuError).details).toHaveProperty(c.field);
      expect(isDeepStrictEqual(w.h.state(), before)).toBe(true);
    });
  }
});
