/** Test helpers: a host with the mock backend registered in a private registry. */

import type { Backend, BackendContext, BackendFactory, Capabilities, IovaRange } from "@iommu-kit/core";
import { BackendRegistry } from "@iommu-kit/core";
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
 * state and table accounting exactly as before; stops at the first success.
 */
export function sweepFailNth(host: Host, op: () => unknown): Sweep {
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
      expect(host.state(), `n=${n}`).toEqual(before);
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
