/** Test helpers: a host with the mock backend registered in a private registry. */

import type { Backend, BackendContext, BackendFactory, IovaRange } from "@iommu-kit/core";
import { BackendRegistry } from "@iommu-kit/core";
import { MockBackend, mockBackend } from "@iommu-kit/core/testing";
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

/** A host (small RAM for speed) with "mock" and "mock-resv" registered and two IOMMUs. */
export function mockHost(opts: HostOptions = {}): Host {
  const registry = new BackendRegistry();
  registry.register(mockBackend);
  registry.register(reservingMock);
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
