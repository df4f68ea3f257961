/**
 * The copy half of DMA and emulated access (issue 16): bytes move with TypedArray.set over
 * whole runs, and the edge cases of that: a run crossing a page or a translation boundary,
 * a fault in the middle of a run (nothing moves: all or nothing), physical memory that is
 * not RAM, pages recycled by the memory model, and Host.accessRwInto, the caller-buffer
 * form of iommufd_access_rw.
 */

import type { Backend, Translation } from "@iommu-kit/core";
import { Access, PhysicalMemory } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { DmaEngine } from "../src/dma.ts";
import { expectErrno, mockHost, pattern } from "./helpers.ts";

function dmaHost() {
  const h = mockHost();
  const dev = h.addDevice({ iommu: "m0", rid: 1 });
  const ioas = h.ioasAlloc();
  // 0x20_0000..0x60_0000 -> PA 0x80_0000 (2 MiB blocks on the mock); 0x1000 / 0x2000 -> two
  // scattered 4K pages; 0x3000 unmapped.
  h.ioasMap(ioas, { iova: 0x20_0000, length: 0x40_0000, pa: 0x80_0000, prot: "rw" });
  h.ioasMap(ioas, { iova: 0x1000, length: 0x1000, pa: 0x30_5000, prot: "rw" });
  h.ioasMap(ioas, { iova: 0x2000, length: 0x1000, pa: 0x10_3000, prot: "rw" });
  h.attach(dev, "rid", ioas);
  return { h, dev, ioas };
}

describe("DMA copies", () => {
  it("one page, whole and partial, including RAM never written (reads as zeros)", () => {
    const { h, dev } = dmaHost();
    const page = pattern(4096, 7);
    expect(h.dmaInto(dev, null, 0x20_1000, Access.WRITE, page)).toBe(0x80_1000);
    const back = new Uint8Array(4096).fill(0xee);
    expect(h.dmaInto(dev, null, 0x20_1000, Access.READ, back)).toBe(0x80_1000);
    expect(back).toEqual(page);
    const part = new Uint8Array(100).fill(0xee);
    expect(h.dmaInto(dev, null, 0x20_1f9c, Access.READ, part)).toBe(0x80_1f9c);
    expect(part).toEqual(page.subarray(0xf9c));
    // Never written: zeros, every byte of the caller's buffer overwritten.
    back.fill(0xee);
    expect(h.dmaInto(dev, null, 0x20_5000, Access.READ, back)).toBe(0x80_5000);
    expect(back).toEqual(new Uint8Array(4096));
    // A partial write lands at its offset and nowhere else.
    expect(h.dmaInto(dev, null, 0x20_5010, Access.WRITE, pattern(16, 1))).toBe(0x80_5010);
    expect(h.memRead(0x80_5000, 0x30)).toEqual(
      Uint8Array.from([...new Uint8Array(16), ...pattern(16, 1), ...new Uint8Array(16)]),
    );
  });

  it("a run inside one translation crossing page boundaries (one segment, several pages)", () => {
    const { h, dev } = dmaHost();
    const data = pattern(3 * 4096 + 200, 3);
    expect(h.dmaInto(dev, null, 0x20_0f00, Access.WRITE, data)).toBe(0x80_0f00);
    expect(h.memRead(0x80_0f00, data.length)).toEqual(data);
    const back = new Uint8Array(data.length);
    expect(h.dmaInto(dev, null, 0x20_0f00, Access.READ, back)).toBe(0x80_0f00);
    expect(back).toEqual(data);
  });

  it("a multi-page run whose pages sit out of order in memory, with a never-written page inside", () => {
    const { h, dev } = dmaHost();
    // Pages written last-first (each a new page of the memory model, so their storage runs
    // backwards); page 2 of 5 is never written and reads as zeros.
    for (const k of [4, 3, 1, 0]) h.memWrite(0x80_a000 + k * 4096, pattern(4096, k * 16));
    const want = Uint8Array.from([
      ...pattern(4096, 0).subarray(0x10),
      ...pattern(4096, 16),
      ...new Uint8Array(4096),
      ...pattern(4096, 48),
      ...pattern(4096, 64).subarray(0, 0xff0),
    ]);
    const back = new Uint8Array(want.length).fill(0xee);
    expect(h.dmaInto(dev, null, 0x20_a010, Access.READ, back)).toBe(0x80_a010);
    expect(back).toEqual(want);
    // Written back shifted by one page, through the same kind of run.
    expect(h.dmaInto(dev, null, 0x20_b010, Access.WRITE, want)).toBe(0x80_b010);
    expect(h.memRead(0x80_b010, want.length)).toEqual(want);
  });

  it("a run crossing a translation boundary into discontiguous PAs (two segments)", () => {
    const { h, dev } = dmaHost();
    const data = pattern(0x200, 9);
    expect(h.dmaInto(dev, null, 0x1f00, Access.WRITE, data)).toBe(0x30_5f00);
    expect(h.memRead(0x30_5f00, 0x100)).toEqual(data.subarray(0, 0x100));
    expect(h.memRead(0x10_3000, 0x100)).toEqual(data.subarray(0x100));
    const back = new Uint8Array(0x200);
    expect(h.dmaInto(dev, null, 0x1f00, Access.READ, back)).toBe(0x30_5f00);
    expect(back).toEqual(data);
  });

  it("a fault in the middle of a run moves nothing, either way", () => {
    const { h, dev } = dmaHost();
    h.memWrite(0x10_3f00, pattern(0x100, 4));
    const before = h.state();
    // 0x2f00..0x3100: the second page (0x3000) is unmapped.
    expect(h.dmaInto(dev, null, 0x2f00, Access.WRITE, pattern(0x200, 50))).toBe(-1);
    expect(h.faultsRead(dev)[0]).toMatchObject({ iova: 0x3000, class: "translation" });
    expect(h.state()).toEqual(before);
    const back = new Uint8Array(0x200).fill(0xee);
    expect(h.dmaInto(dev, null, 0x2f00, Access.READ, back)).toBe(-1);
    expect(back).toEqual(new Uint8Array(0x200).fill(0xee));
    expect(h.dma(dev, { iova: 0x2f00, access: "read", length: 0x200 })).toMatchObject({ ok: false });
  });

  it("a DMA looks up each translation it needs once: one-page, multi-page and faulting DMAs alike", () => {
    const { h, dev } = dmaHost();
    const lookups = (): number => {
      const c = h.counters("m0");
      return c.iotlbHits + c.iotlbMisses;
    };
    // lookups: the IOTLB lookups the DMA makes (one per translated region it touches).
    const cases: Array<[iova: number, length: number, access: number, lookups: number, pa: number]> = [
      [0x20_1000, 4096, Access.READ, 1, 0x80_1000], // one whole page
      [0x20_1010, 16, Access.WRITE, 1, 0x80_1010], // part of one page
      [0x20_1f00, 0x200, Access.READ, 1, 0x80_1f00], // two pages of one 2 MiB translation
      [0x1f00, 0x200, Access.WRITE, 2, 0x30_5f00], // two translations
      [0x2f00, 0x200, Access.READ, 2, -1], // the second page faults
      [0x3000, 16, Access.READ, 1, -1], // the first page faults
    ];
    for (const [iova, length, access, n, pa] of cases) {
      const before = lookups();
      expect(h.dmaInto(dev, null, iova, access, new Uint8Array(length))).toBe(pa);
      expect(lookups() - before).toBe(n);
    }
    // Both faults were delivered once each.
    expect(h.faultsRead(dev).map((f) => f.iova)).toEqual([0x3000, 0x3000]);
  });

  it("a page the memory model recycles is read through its new owner, never a stale view", () => {
    const { h, dev } = dmaHost();
    const one = new Uint8Array(4096);
    h.dmaInto(dev, null, 0x20_1000, Access.WRITE, pattern(4096, 1));
    h.dmaInto(dev, null, 0x20_1000, Access.READ, one);
    // Zeroing the whole page releases its array; the next new page reuses it.
    h.memory.fill(0x80_1000, 4096, 0);
    h.dmaInto(dev, null, 0x20_2000, Access.WRITE, pattern(4096, 2));
    h.dmaInto(dev, null, 0x20_1000, Access.READ, one);
    expect(one).toEqual(new Uint8Array(4096));
    h.dmaInto(dev, null, 0x20_2000, Access.READ, one);
    expect(one).toEqual(pattern(4096, 2));
  });
});

describe("DmaEngine over memory that is not RAM", () => {
  /** A backend translating every IOVA to `base` + iova with a 4K leaf. */
  function flat(base: number): Backend {
    return {
      translate(_rid: number, _pasid: number, iova: number, _a: number, out: Translation) {
        out.pa = base + iova;
        out.perm = 3;
        out.sizeLg2 = 12;
        out.fault = null;
        return true;
      },
    } as unknown as Backend;
  }

  it("EFAULT and nothing copied, for one page and for a run that leaves RAM midway", () => {
    const memory = new PhysicalMemory([{ base: 0, size: 0x10_0000 }]);
    memory.write(0xf_f000, pattern(4096, 5));
    const eng = new DmaEngine();
    expect(eng.translate(flat(0x20_0000), 0, -1, 0, 4096, Access.READ)).toBe(true);
    const buf = new Uint8Array(4096).fill(0xee);
    expectErrno(() => eng.read(memory, buf), "EFAULT");
    expectErrno(() => eng.write(memory, buf), "EFAULT");
    expect(buf).toEqual(new Uint8Array(4096).fill(0xee));
    // 0xf_f800 .. 0x10_0800: the second half is past the end of RAM.
    expect(eng.translate(flat(0xf_f000), 0, -1, 0x800, 4096, Access.READ)).toBe(true);
    expectErrno(() => eng.read(memory, buf), "EFAULT");
    expect(buf).toEqual(new Uint8Array(4096).fill(0xee));
    expectErrno(() => eng.write(memory, buf), "EFAULT");
    expect(memory.read(0xf_f000, 4096)).toEqual(pattern(4096, 5));
  });
});

describe("Host.accessRwInto", () => {
  function accessHost() {
    const h = mockHost();
    const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
    const m = h.addMdev({ parent });
    const ioas = h.ioasAlloc();
    // Two areas back to back in IOVA, apart in PA; 0x10_4000.. unmapped; a read-only page after.
    h.ioasMap(ioas, { iova: 0x10_0000, length: 0x2000, pa: 0x80_0000, prot: "rw" });
    h.ioasMap(ioas, { iova: 0x10_2000, length: 0x2000, pa: 0x20_0000, prot: "rw" });
    h.ioasMap(ioas, { iova: 0x10_5000, length: 0x1000, pa: 0x30_0000, prot: "r" });
    return { h, m, ioas };
  }

  it("reads into the caller's buffer what accessRw returns, across pages and areas", () => {
    const { h, m, ioas } = accessHost();
    h.attach(m, "emulated", ioas);
    const data = pattern(0x3000, 11);
    h.accessRwInto(m, { iova: 0x10_0800, write: true }, data);
    expect(h.memRead(0x80_0800, 0x1800)).toEqual(data.subarray(0, 0x1800));
    expect(h.memRead(0x20_0000, 0x1800)).toEqual(data.subarray(0x1800));
    const into = new Uint8Array(0x3000).fill(0xee);
    h.accessRwInto(m, { iova: 0x10_0800, write: false }, into);
    expect(into).toEqual(data);
    expect(h.accessRw(m, { iova: 0x10_0800, length: 0x3000, write: false })).toEqual(into);
    const one = new Uint8Array(1);
    h.accessRwInto(m, { iova: 0x10_1fff, write: false }, one);
    expect(one[0]).toBe(data[0x17ff]);
  });

  it("all or nothing: a hole or a read-only page midway leaves the buffer and memory as they were", () => {
    const { h, m, ioas } = accessHost();
    h.attach(m, "emulated", ioas);
    h.memWrite(0x20_1000, pattern(0x1000, 2));
    const before = h.state();
    const into = new Uint8Array(0x2000).fill(0xee);
    // 0x10_3000..0x10_5000: the second page (0x10_4000) is not mapped.
    expectErrno(() => h.accessRwInto(m, { iova: 0x10_3000, write: false }, into), "ENOENT");
    expect(into).toEqual(new Uint8Array(0x2000).fill(0xee));
    expectErrno(() => h.accessRwInto(m, { iova: 0x10_3000, write: true }, pattern(0x2000, 9)), "ENOENT");
    // Writing through the read-only page is EPERM (iommufd_access_rw: check_area_prot).
    expectErrno(() => h.accessRwInto(m, { iova: 0x10_5000, write: true }, pattern(16)), "EPERM");
    expect(h.state()).toEqual(before);
  });

  it("EINVAL for a bad IOVA or an empty buffer, ENOENT without an access", () => {
    const { h, m, ioas } = accessHost();
    expectErrno(() => h.accessRwInto(m, { iova: 0x10_0000, write: false }, new Uint8Array(4)), "ENOENT");
    h.attach(m, "emulated", ioas);
    expectErrno(() => h.accessRwInto(m, { iova: -1, write: false }, new Uint8Array(4)), "EINVAL");
    expectErrno(() => h.accessRwInto(m, { iova: 0x10_0000, write: false }, new Uint8Array(0)), "EINVAL");
    expectErrno(
      () => h.accessRwInto(m, { iova: 0x10_0000, write: false }, [1, 2] as unknown as Uint8Array),
      "EINVAL",
    );
  });
});
