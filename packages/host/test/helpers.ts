/** Test helpers: a host with the mock backend registered in a private registry. */

import type {
  AttachIntent,
  AttachResult,
  Backend,
  BackendContext,
  BackendFactory,
  Capabilities,
  Domain,
  DomainFlags,
  DomainRequest,
  IovaRange,
  PageRequest,
  PageResponseCode,
  Translation,
} from "@iommu-kit/core";
import {
  Access,
  assertIntentAllowed,
  BackendRegistry,
  Intent,
  IommuError,
  makeFault,
  NO_PASID,
  permNeeded,
} from "@iommu-kit/core";
import { MockBackend, mockBackend } from "@iommu-kit/core/testing";
import { mdevEmulatedBackend } from "@iommu-kit/mdev-emulated";
import { expect } from "vitest";
import type { HostOptions } from "../src/index.ts";
import { Host } from "../src/index.ts";

/** A mock backend that reports an MSI-like reserved window for every device. */
export class ReservingMock extends MockBackend {
  static window: IovaRange = { start: 0x8000000, last: 0x80fffff };
  override reservedRegions(): readonly IovaRange[] {
    return [ReservingMock.window];
  }
}

/** Factory of {@link ReservingMock}, registered as "mock-resv". */
export const reservingMock: BackendFactory = {
  name: "mock-resv",
  description: "mock with a reserved window",
  create: (ctx: BackendContext): Backend => new ReservingMock(ctx),
};

/** A host (small RAM for speed) with "mock", "mock-resv" and "mdev-emulated" registered and two mock IOMMUs. */
export function mockHost(opts: HostOptions = {}): Host {
  const registry = new BackendRegistry();
  registry.register(mockBackend);
  registry.register(reservingMock);
  registry.register(mdevEmulatedBackend);
  registry.register(noDirtyMock);
  registry.register(nestingMock);
  registry.register(iopfMock);
  const host = new Host({
    ram: [{ base: 0, size: 2 ** 30 }],
    tables: { base: 2 ** 30, size: 2 ** 26 },
    registry,
    ...opts,
  });
  host.addIommu("m0", "mock");
  host.addIommu("m1", "mock");
  return host;
}

/** Expects `fn` to throw an IommuError with `code`. */
export function expectErrno(fn: () => unknown, code: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeDefined();
  expect((err as { code?: string }).code).toBe(code);
}

/** Bytes 0..n-1 + seed. */
export function pattern(n: number, seed = 0): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i + seed) & 0xff;
  return out;
}

/** Outcome of a fail_nth sweep. */
export interface Sweep {
  /** The n at which the operation succeeded. */
  readonly succeededAt: number;
  /** The operation's result. */
  readonly result: unknown;
}

/**
 * iommufd_fail_nth: for n = 1, 2, ... (at most 400) arms failure injection at the n-th
 * allocation point and runs `op`. Every failed run must be ENOMEM and leave the host's
 * state and table accounting exactly as before; stops at the first success. With
 * `compareMemory` false, memory contents are left out (a backend whose command queue
 * keeps the commands a failed attach issued).
 */
export function sweepFailNth(host: Host, op: () => unknown, compareMemory = true): Sweep {
  for (let n = 1; n <= 400; n++) {
    const before = host.state();
    const stats = host.tables.stats();
    host.failNth.arm(n);
    let result: unknown;
    try {
      result = op();
    } catch (e) {
      host.failNth.disarm();
      expect((e as { code?: string }).code, `n=${n}: ${(e as Error).message}`).toBe("ENOMEM");
      expect(host.tables.stats(), `n=${n}`).toEqual(stats);
      const after = host.state();
      if (compareMemory) expect(after, `n=${n}`).toEqual(before);
      else expect({ ...after, memory: null }, `n=${n}`).toEqual({ ...before, memory: null });
      continue;
    }
    host.failNth.disarm();
    return { succeededAt: n, result };
  }
  throw new Error("the operation never succeeded within 400 injected failures");
}

/** A mock IOMMU whose devices have no dirty tracking (MOCK_FLAGS_DEVICE_NO_DIRTY). */
export class NoDirtyMock extends MockBackend {
  override capabilities(rid: number): Capabilities {
    const c = super.capabilities(rid);
    return { ...c, features: { ...c.features, dirtyTracking: false } };
  }
}

/** Factory of {@link NoDirtyMock} ("mock-nodirty"). */
export const noDirtyMock: BackendFactory = {
  name: "mock-nodirty",
  description: "mock without dirty tracking",
  create: (ctx: BackendContext): Backend => new NoDirtyMock(ctx),
};

/** A nested domain of {@link NestingMock}: walks nothing itself, reads through its parent. */
class FakeNested implements Domain {
  readonly backend: Backend;
  readonly id: number;
  readonly type = "nested" as const;
  readonly format = "mock-nested";
  readonly flags: DomainFlags;
  readonly aperture: IovaRange = { start: 0, last: 2 ** 39 - 1 };
  readonly pageSizeBitmap = 0n;
  readonly parent: Domain;
  /** Invalidation entries seen. */
  readonly seen: unknown[] = [];
  freed = false;

  constructor(backend: Backend, id: number, parent: Domain, flags: DomainFlags) {
    this.backend = backend;
    this.id = id;
    this.parent = parent;
    this.flags = flags;
  }
  map(): void {
    throw new IommuError("EINVAL", "nested domains are not mapped by the host");
  }
  unmap(): number {
    throw new IommuError("EINVAL", "nested domains are not mapped by the host");
  }
  iovaToPhys(iova: number): number {
    return this.parent.iovaToPhys(iova);
  }
  free(): void {
    this.freed = true;
  }
  /** Entries `{ok: true}` are handled; anything else stops with EINVAL and `handled`. */
  invalidate(entries: readonly unknown[]): number {
    for (const [i, e] of entries.entries()) {
      if ((e as { ok?: boolean }).ok !== true) {
        throw new IommuError("EINVAL", `bad invalidation entry ${i}`, { handled: i });
      }
      this.seen.push(e);
    }
    return entries.length;
  }
}

/**
 * A mock IOMMU with nesting (a test double for the host's plumbing): nest-parent
 * paging domains, nested domains from vendor data `{ok: true}` that translate through
 * their parent, and the `rid-all-pasids` intent.
 */
export class NestingMock extends MockBackend {
  readonly #nested = new Map<number, FakeNested>();
  #next = 1000;

  override capabilities(rid: number): Capabilities {
    const c = super.capabilities(rid);
    return { ...c, intents: [...c.intents, "rid-all-pasids"], features: { ...c.features, nesting: true } };
  }
  override allocDomain(request: DomainRequest): Domain {
    if (request.type === "nested") {
      if ((request.data as { ok?: boolean }).ok !== true) throw new IommuError("EINVAL", "bad nested data");
      return new FakeNested(this, this.#next++, request.parent, request.flags ?? {});
    }
    if (request.type !== "paging" || !request.flags?.nestParent) return super.allocDomain(request);
    const d = super.allocDomain({ ...request, flags: { ...request.flags, nestParent: false } });
    (d as { flags: DomainFlags }).flags = { ...request.flags };
    return d;
  }
  override attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    if (domain instanceof FakeNested) {
      assertIntentAllowed(this.capabilities(rid), intent);
      if (intent.kind === "pasid") throw new IommuError("EINVAL", "nested per PASID not modelled");
      super.detach(rid, Intent.rid);
      this.#nested.set(rid, domain);
      return {};
    }
    if (intent.kind === "rid-all-pasids")
      throw new IommuError("EINVAL", "rid-all-pasids needs a nested domain");
    this.#nested.delete(rid);
    return super.attach(rid, intent, domain);
  }
  override detach(rid: number, intent: AttachIntent): void {
    if (intent.kind !== "pasid") this.#nested.delete(rid);
    super.detach(rid, intent.kind === "rid-all-pasids" ? Intent.rid : intent);
  }
  override translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    const n = this.#nested.get(rid);
    if (n === undefined || pasid !== NO_PASID) return super.translate(rid, pasid, iova, access, out);
    const pa = n.iovaToPhys(iova);
    if (pa < 0) return super.translate(0xffff, NO_PASID, iova, access, out);
    out.pa = pa;
    out.perm = 3;
    out.sizeLg2 = 12;
    out.fault = null;
    return true;
  }
}

/** Factory of {@link NestingMock} ("mock-nest"). */
export const nestingMock: BackendFactory = {
  name: "mock-nest",
  description: "mock with nesting",
  create: (ctx: BackendContext): Backend => new NestingMock(ctx),
};

/**
 * A mock IOMMU whose translation and permission faults are page requests (as an SMMUv3
 * stall or a VT-d PRQ, in spirit): the request is held under the lowest free group
 * index until `pageResponse`, which it records.
 */
export class IopfMock extends MockBackend {
  /** Held requests by grpid. */
  readonly held: Map<number, PageRequest> = new Map();
  /** Every response, in order. */
  readonly responses: Array<{ grpid: number; code: PageResponseCode }> = [];

  override translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    if (super.translate(rid, pasid, iova, access, out)) return true;
    const f = out.fault!;
    if (f.class !== "translation" && f.class !== "permission") return false;
    let grpid = 0;
    while (this.held.has(grpid)) grpid++;
    const req: PageRequest = {
      rid,
      pasid,
      addr: iova - (iova % 4096),
      perm: permNeeded(access),
      priv: (access & Access.PRIV) !== 0,
      grpid,
      last: true,
    };
    this.held.set(grpid, req);
    out.fault = makeFault(f.class, true, f.vendor, req);
    return false;
  }

  pageResponse(request: PageRequest, code: PageResponseCode): void {
    const r = this.held.get(request.grpid);
    if (r === undefined || r.rid !== request.rid)
      throw new IommuError("ENOENT", `no page request ${request.grpid} held for rid ${request.rid}`);
    this.held.delete(request.grpid);
    this.responses.push({ grpid: request.grpid, code });
  }
}

/** Factory of {@link IopfMock} ("mock-iopf"). */
export const iopfMock: BackendFactory = {
  name: "mock-iopf",
  description: "mock whose faults are page requests",
  create: (ctx: BackendContext): Backend => new IopfMock(ctx),
};
