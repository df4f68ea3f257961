/**
 * Random map / unmap / pin / unpin / read / write sequences against a plain reference
 * model: the same bytes, the same errors, exact pin counts, and nothing left behind.
 * IOVAs straddle a chunk boundary; physical pages alias, and one is not RAM.
 */

import { Intent, IommuError, Perm } from "@iommu-kit/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { EmulatedDomain } from "../src/domain.ts";
import { addMdev, fixture } from "./helpers.ts";

const K4 = 0x1000;
/** 24 IOVA pages from 0x1F0000: page 16 starts chunk 1. */
const IOVA_BASE = 0x1f_0000;
const IOVA_PAGES = 24;
/** 16 RAM pages, then one address that is not RAM. */
const PA_BASE = 0x100_0000;
const RAM_PAGES = 16;
const NOT_RAM = 2 ** 40;

type Op =
  | { op: "map"; page: number; n: number; pa: number; prot: number }
  | { op: "unmap"; page: number; n: number }
  | { op: "pin"; at: number; len: number; write: boolean }
  | { op: "unpin"; at: number; len: number }
  | { op: "unpinLast" }
  | { op: "read"; at: number; len: number }
  | { op: "write"; at: number; len: number; seed: number }
  | { op: "callback"; wellBehaved: boolean };

const byteAt = fc.integer({ min: 0, max: IOVA_PAGES * K4 - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constant("map" as const),
      page: fc.integer({ min: 0, max: IOVA_PAGES - 1 }),
      n: fc.integer({ min: 1, max: 10 }),
      pa: fc.integer({ min: 0, max: RAM_PAGES }),
      prot: fc.constantFrom(Perm.R, Perm.W, Perm.R | Perm.W),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("unmap" as const),
      page: fc.integer({ min: 0, max: IOVA_PAGES - 1 }),
      n: fc.integer({ min: 1, max: 8 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("pin" as const),
      at: byteAt,
      len: fc.integer({ min: 0, max: 3 * K4 }),
      write: fc.boolean(),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("unpin" as const),
      at: byteAt,
      len: fc.integer({ min: 1, max: 2 * K4 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("read" as const),
      at: byteAt,
      len: fc.integer({ min: 0, max: 3 * K4 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      at: byteAt,
      len: fc.integer({ min: 0, max: 3 * K4 }),
      seed: fc.integer({ min: 0, max: 255 }),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ op: fc.constant("unpinLast" as const) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("callback" as const), wellBehaved: fc.boolean() }), weight: 1 },
);

interface ModelPage {
  pa: number;
  prot: number;
  pins: number;
}

/** The reference: a page map, a pin count per page, and bytes per physical page. */
class Model {
  readonly pages = new Map<number, ModelPage>();
  readonly ram = new Map<number, Uint8Array>();
  wellBehaved = true;

  phys(pa: number): Uint8Array {
    let p = this.ram.get(pa);
    if (p === undefined) {
      p = new Uint8Array(K4);
      this.ram.set(pa, p);
    }
    return p;
  }

  pinCount(): number {
    let n = 0;
    for (const p of this.pages.values()) n += p.pins;
    return n;
  }

  /** Pages of a byte range, checked in order as the domain does; the first failure wins. */
  check(at: number, len: number, need: number, ram: boolean): string | number[] {
    if (len <= 0) return "EINVAL";
    const first = Math.floor(at / K4);
    const last = Math.floor((at + len - 1) / K4);
    const out: number[] = [];
    for (let i = first; i <= last; i++) {
      const p = this.pages.get(i);
      if (p === undefined) return "ENOENT";
      if ((p.prot & need) !== need) return "EPERM";
      if (ram && p.pa >= NOT_RAM) return "EFAULT";
      out.push(i);
    }
    return out;
  }
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 7) & 0xff;
  return b;
}

function outcome(fn: () => unknown): { code: string; value: unknown } {
  try {
    return { code: "ok", value: fn() };
  } catch (e) {
    if (e instanceof IommuError) return { code: e.code, value: undefined };
    throw e;
  }
}

function run(ops: readonly Op[]): void {
  const f = fixture();
  addMdev(f, 1);
  const dom = f.mdev.allocDomain({ type: "paging" }) as EmulatedDomain;
  f.mdev.attach(1, Intent.emulated, dom);
  const m = new Model();
  const paOf = (i: number): number => (i === RAM_PAGES ? NOT_RAM : PA_BASE + i * K4);
  /** Byte ranges of successful pins, most recent last (what a driver would unpin). */
  const pinned: { at: number; len: number }[] = [];
  const unpin = (at: number, len: number): void => {
    const got = outcome(() => dom.unpin(IOVA_BASE + at, len));
    const first = Math.floor(at / K4);
    const last = Math.floor((at + len - 1) / K4);
    let ok = true;
    for (let i = first; i <= last; i++) if ((m.pages.get(i)?.pins ?? 0) === 0) ok = false;
    expect(got.code).toBe(ok ? "ok" : "EINVAL");
    if (ok) for (let i = first; i <= last; i++) m.pages.get(i)!.pins--;
  };

  for (const op of ops) {
    switch (op.op) {
      case "map": {
        const n = Math.min(op.n, IOVA_PAGES - op.page);
        const got = outcome(() => dom.map(IOVA_BASE + op.page * K4, paOf(op.pa), n * K4, op.prot));
        let want = "ok";
        for (let i = op.page; i < op.page + n; i++) if (m.pages.has(i)) want = "EEXIST";
        if (want === "ok") {
          for (let i = 0; i < n; i++)
            m.pages.set(op.page + i, { pa: paOf(op.pa) + i * K4, prot: op.prot, pins: 0 });
        }
        expect(got.code).toBe(want);
        break;
      }
      case "unmap": {
        const n = Math.min(op.n, IOVA_PAGES - op.page);
        const got = outcome(() => dom.unmap(IOVA_BASE + op.page * K4, n * K4));
        let pinned = false;
        let present = 0;
        for (let i = op.page; i < op.page + n; i++) {
          const p = m.pages.get(i);
          if (p !== undefined) present++;
          if (p !== undefined && p.pins > 0) pinned = true;
        }
        if (pinned && !m.wellBehaved) {
          expect(got.code).toBe("EBUSY");
        } else {
          expect(got).toEqual({ code: "ok", value: present * K4 });
          for (let i = op.page; i < op.page + n; i++) m.pages.delete(i);
        }
        break;
      }
      case "pin": {
        const got = outcome(() => dom.pin(IOVA_BASE + op.at, op.len, op.write));
        const want = m.check(op.at, op.len, op.write ? Perm.W : Perm.R, false);
        if (typeof want === "string") {
          expect(got.code).toBe(want);
        } else {
          expect(got).toEqual({ code: "ok", value: want.map((i) => m.pages.get(i)!.pa) });
          for (const i of want) m.pages.get(i)!.pins++;
          pinned.push({ at: op.at, len: op.len });
        }
        break;
      }
      case "unpin":
        unpin(op.at, op.len);
        break;
      case "unpinLast": {
        const last = pinned.pop();
        if (last !== undefined) unpin(last.at, last.len);
        break;
      }
      case "read": {
        const got = outcome(() => dom.read(IOVA_BASE + op.at, op.len));
        const want = m.check(op.at, op.len, Perm.R, true);
        if (typeof want === "string") {
          expect(got.code).toBe(want);
        } else {
          const exp = new Uint8Array(op.len);
          for (let k = 0; k < op.len; k++) {
            const at = op.at + k;
            exp[k] = m.phys(m.pages.get(Math.floor(at / K4))!.pa)[at % K4]!;
          }
          expect(got.code).toBe("ok");
          expect(Buffer.from(got.value as Uint8Array).equals(exp)).toBe(true);
        }
        break;
      }
      case "write": {
        const data = pattern(op.len, op.seed);
        const got = outcome(() => dom.write(IOVA_BASE + op.at, data));
        const want = m.check(op.at, op.len, Perm.W, true);
        if (typeof want === "string") {
          expect(got.code).toBe(want);
        } else {
          expect(got.code).toBe("ok");
          for (let k = 0; k < op.len; k++) {
            const at = op.at + k;
            m.phys(m.pages.get(Math.floor(at / K4))!.pa)[at % K4] = data[k]!;
          }
        }
        break;
      }
      case "callback":
        m.wellBehaved = op.wellBehaved;
        f.mdev.setUnmapCallback(1, op.wellBehaved ? null : () => {});
        break;
    }
    expect(dom.pinCount()).toBe(m.pinCount());
    expect(dom.table.pages).toBe(m.pages.size);
  }

  // Every byte of RAM the model touched matches physical memory.
  for (const [pa, bytes] of m.ram) expect(Buffer.from(f.memory.read(pa, K4)).equals(bytes)).toBe(true);
  for (const [i, p] of m.pages) {
    expect(dom.iovaToPhys(IOVA_BASE + i * K4 + 1)).toBe(p.pa + 1);
    expect(dom.table.pinsAt(IOVA_BASE + i * K4)).toBe(p.pins);
  }
  // Tear down: the ready-made callback releases every pin; nothing is left.
  f.mdev.setUnmapCallback(1, null);
  dom.unmap(0, 2 ** 48);
  expect([dom.pinCount(), dom.table.pages, dom.table.chunks.size]).toEqual([0, 0, 0]);
  f.mdev.detach(1, Intent.emulated);
  dom.free();
}

describe("emulated table against a reference model", () => {
  it("agrees on bytes, errors and pin counts for random operation sequences", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => run(ops)),
      { numRuns: 300 },
    );
  });

  it("regression: a pinned page whose mapping is replaced by unmap then map", () => {
    run([
      { op: "map", page: 15, n: 2, pa: 3, prot: Perm.R | Perm.W },
      { op: "pin", at: 15 * K4 + 10, len: K4, write: true },
      { op: "callback", wellBehaved: false },
      { op: "unmap", page: 15, n: 1 },
      { op: "callback", wellBehaved: true },
      { op: "unmap", page: 15, n: 2 },
      { op: "map", page: 15, n: 1, pa: 16, prot: Perm.R },
      { op: "read", at: 15 * K4, len: 4 },
    ]);
  });
});
