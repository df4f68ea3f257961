import { Intent, IommuError, Perm, PhysicalMemory } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { EmulatedDomain } from "../src/domain.ts";
import { EntryBit, leafLg2 } from "../src/format/emulated-table.ts";
import { addMdev, fixture } from "./helpers.ts";

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const RW = Perm.R | Perm.W;

function setup(flags = {}) {
  const f = fixture();
  const dom = f.mdev.allocDomain({ type: "paging", flags }) as EmulatedDomain;
  return { ...f, dom };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  return "none";
}

function bytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe("map", () => {
  it("maps page by page and translates every byte", () => {
    const { dom } = setup();
    dom.map(0x10_0000, 0x30_0000, 3 * K4, RW);
    expect(dom.iovaToPhys(0x10_0000)).toBe(0x30_0000);
    expect(dom.iovaToPhys(0x10_2fff)).toBe(0x30_2fff);
    expect(dom.iovaToPhys(0x10_3000)).toBe(-1);
    expect(dom.table.pages).toBe(3);
  });

  it("uses 2 MiB and 1 GiB leaves where iova, pa and length allow", () => {
    const { dom } = setup();
    dom.map(G1 - K4, G1 - K4, K4 + G1 + M2 + K4, Perm.R);
    expect(leafLg2(dom.table.flagsAt(G1 - K4))).toBe(12);
    expect(leafLg2(dom.table.flagsAt(G1))).toBe(30);
    expect(leafLg2(dom.table.flagsAt(2 * G1 - 1))).toBe(30);
    expect(leafLg2(dom.table.flagsAt(2 * G1))).toBe(21);
    expect(leafLg2(dom.table.flagsAt(2 * G1 + M2))).toBe(12);
  });

  it("uses 4 KiB leaves when pa and iova disagree in alignment", () => {
    const { dom } = setup();
    dom.map(M2, M2 + K4, M2, Perm.R);
    expect(leafLg2(dom.table.flagsAt(M2))).toBe(12);
    expect(dom.iovaToPhys(M2 + 0x1234)).toBe(M2 + K4 + 0x1234);
  });

  it.each([
    ["misaligned iova", 0x1001, 0, K4],
    ["misaligned pa", 0x1000, 0x10, K4],
    ["misaligned length", 0x1000, 0, 0x800],
    ["zero length", 0x1000, 0, 0],
    ["negative iova", -K4, 0, K4],
    ["beyond the aperture", 2 ** 48 - K4, 0, 2 * K4],
    ["pa beyond 2^52", 0, 2 ** 52, K4],
  ])("refuses %s with EINVAL", (_n, iova, pa, length) => {
    const { dom } = setup();
    expect(code(() => dom.map(iova, pa, length, Perm.R))).toBe("EINVAL");
    expect(dom.table.pages).toBe(0);
  });

  it("refuses prot bits other than R/W/X", () => {
    const { dom } = setup();
    expect(code(() => dom.map(0, 0, K4, 8))).toBe("EINVAL");
  });

  it("refuses an overlap with EEXIST and changes nothing", () => {
    const { dom } = setup();
    dom.map(0x5000, 0x9000, K4, Perm.R);
    expect(code(() => dom.map(0x3000, 0x1000, 3 * K4, RW))).toBe("EEXIST");
    expect(dom.table.pages).toBe(1);
    expect(dom.iovaToPhys(0x3000)).toBe(-1);
    expect(dom.iovaToPhys(0x5000)).toBe(0x9000);
  });

  it("fails with ENOMEM under fail_nth and changes nothing", () => {
    const { dom, memory } = setup();
    memory.failNth.arm(1);
    expect(code(() => dom.map(0, 0, K4, Perm.R))).toBe("ENOMEM");
    expect(dom.table.pages).toBe(0);
    dom.map(0, 0, K4, Perm.R);
    expect(dom.table.pages).toBe(1);
  });
});

describe("unmap", () => {
  it("returns the bytes unmapped; holes count nothing", () => {
    const { dom } = setup();
    dom.map(0x1000, 0x1000, K4, Perm.R);
    dom.map(0x4000, 0x4000, 2 * K4, Perm.R);
    expect(dom.unmap(0, 0x10000)).toBe(3 * K4);
    expect(dom.unmap(0, 0x10000)).toBe(0);
    expect(dom.unmap(0, 0)).toBe(0);
    expect(dom.table.chunks.size).toBe(0);
  });

  it("unmaps part of a 4 KiB-leaf mapping", () => {
    const { dom } = setup();
    dom.map(0, 0x10_0000, 4 * K4, RW);
    expect(dom.unmap(K4, 2 * K4)).toBe(2 * K4);
    expect(dom.iovaToPhys(0)).toBe(0x10_0000);
    expect(dom.iovaToPhys(K4)).toBe(-1);
    expect(dom.iovaToPhys(3 * K4)).toBe(0x10_3000);
  });

  it("refuses to split a 2 MiB leaf with EINVAL and changes nothing", () => {
    const { dom } = setup();
    dom.map(M2, M2, M2, RW);
    expect(code(() => dom.unmap(M2, K4))).toBe("EINVAL");
    expect(code(() => dom.unmap(M2 + K4, M2))).toBe("EINVAL");
    expect(dom.table.pages).toBe(512);
    expect(dom.unmap(0, 2 * M2)).toBe(M2);
  });

  it("refuses misaligned unmaps", () => {
    const { dom } = setup();
    expect(code(() => dom.unmap(1, K4))).toBe("EINVAL");
    expect(code(() => dom.unmap(0, 10))).toBe("EINVAL");
  });

  it("unmaps everything with a huge range, walking only the chunks it holds", () => {
    const { dom } = setup();
    dom.map(0, 0, K4, Perm.R);
    dom.map(2 ** 47, 0x2000, K4, Perm.R);
    expect(dom.unmap(0, 2 ** 48)).toBe(2 * K4);
  });
});

describe("pin and unpin", () => {
  it("returns the physical page of each page and counts pins", () => {
    const { dom } = setup();
    dom.map(0x10_0000, 0x70_0000, 2 * K4, RW);
    dom.map(0x10_2000, 0x50_0000, K4, Perm.R);
    expect(dom.pin(0x10_0000, 3 * K4, false)).toEqual([0x70_0000, 0x70_1000, 0x50_0000]);
    expect(dom.pinCount()).toBe(3);
    expect(dom.table.pinsAt(0x10_1000)).toBe(1);
  });

  it("rounds a byte range out to pages", () => {
    const { dom } = setup();
    dom.map(0, 0x20_0000, 4 * K4, RW);
    expect(dom.pin(0xfff, 2, true)).toEqual([0x20_0000, 0x20_1000]);
    dom.unpin(0xfff, 2);
    expect(dom.pinCount()).toBe(0);
  });

  it("allows a double pin and needs two unpins", () => {
    const { dom } = setup();
    dom.map(0, 0x20_0000, K4, RW);
    dom.pin(0, K4, false);
    dom.pin(0, K4, true);
    expect(dom.table.pinsAt(0)).toBe(2);
    dom.unpin(0, K4);
    expect(dom.pinCount()).toBe(1);
    dom.unpin(0, K4);
    expect(dom.pinCount()).toBe(0);
    expect(code(() => dom.unpin(0, K4))).toBe("EINVAL");
  });

  it("refuses a range with a hole with ENOENT and pins nothing", () => {
    const { dom } = setup();
    dom.map(0, 0, K4, RW);
    dom.map(2 * K4, 2 * K4, K4, RW);
    expect(code(() => dom.pin(0, 3 * K4, false))).toBe("ENOENT");
    expect(dom.pinCount()).toBe(0);
    expect(dom.table.pinsAt(0)).toBe(0);
  });

  it("refuses a write pin of a read-only page (the kernel's EPERM) and pins nothing", () => {
    const { dom } = setup();
    dom.map(0, 0, K4, RW);
    dom.map(K4, K4, K4, Perm.R);
    const e = (() => {
      try {
        dom.pin(0, 2 * K4, true);
      } catch (err) {
        return err as IommuError;
      }
      return null;
    })();
    expect(e?.code).toBe("EPERM");
    expect(e?.details.reason).toBe("permission");
    expect(e?.details.iova).toBe(K4);
    expect(dom.pinCount()).toBe(0);
    expect(dom.pin(K4, K4, false)).toEqual([K4]);
  });

  it("refuses a read pin of a write-only page", () => {
    const { dom } = setup();
    dom.map(0, 0, K4, Perm.W);
    expect(code(() => dom.pin(0, K4, false))).toBe("EPERM");
    expect(dom.pin(0, K4, true)).toEqual([0]);
  });

  it.each([
    ["zero length", 0, 0, "EINVAL"],
    ["negative iova", -1, 4, "EINVAL"],
    ["a range that wraps past 2^53", 2 ** 53 - 2, 4, "EOVERFLOW"],
    ["an IOVA beyond the table", 2 ** 48, K4, "ENOENT"],
  ])("refuses %s", (_n, iova, length, want) => {
    const { dom } = setup();
    expect(code(() => dom.pin(iova, length, false))).toBe(want);
  });

  it("unpin of a partly unpinned range changes nothing", () => {
    const { dom } = setup();
    dom.map(0, 0, 2 * K4, RW);
    dom.pin(0, K4, false);
    expect(code(() => dom.unpin(0, 2 * K4))).toBe("EINVAL");
    expect(dom.table.pinsAt(0)).toBe(1);
  });
});

describe("read and write through an IOVA", () => {
  it("writes and reads at any alignment across pages and mappings", () => {
    const { dom, memory } = setup();
    dom.map(0x1_0000, 0x40_0000, K4, RW);
    dom.map(0x1_1000, 0x20_0000, 2 * K4, RW);
    const data = bytes(0x2003, 7);
    dom.write(0x1_0ffd, data);
    expect(memory.read(0x40_0ffd, 3)).toEqual(data.subarray(0, 3));
    expect(memory.read(0x20_0000, 0x2000)).toEqual(data.subarray(3));
    expect(dom.read(0x1_0ffd, 0x2003)).toEqual(data);
    expect(dom.read(0x1_1fff, 2)).toEqual(data.subarray(0x1002, 0x1004));
  });

  it("reads never-written RAM as zeros", () => {
    const { dom } = setup();
    dom.map(0, 0x80_0000, K4, Perm.R);
    expect(dom.read(10, 5)).toEqual(new Uint8Array(5));
  });

  it("readInto fills a caller buffer", () => {
    const { dom, memory } = setup();
    dom.map(0, 0x80_0000, 2 * K4, Perm.R);
    memory.write(0x80_0ff0, bytes(32));
    const dst = new Uint8Array(32);
    dom.readInto(0xff0, dst);
    expect(dst).toEqual(bytes(32));
  });

  it("a write that fails part-way changes no byte", () => {
    const { dom, memory } = setup();
    dom.map(0, 0x10_0000, K4, RW);
    dom.map(K4, 0x20_0000, K4, Perm.R);
    const before = memory.snapshot();
    expect(code(() => dom.write(0xff0, bytes(0x20)))).toBe("EPERM");
    expect(code(() => dom.write(0x10, bytes(0x2000)))).toBe("EPERM");
    dom.map(3 * K4, 0x30_0000, K4, RW);
    expect(code(() => dom.write(3 * K4 - 4, bytes(8)))).toBe("ENOENT");
    expect(PhysicalMemory.sameContents(before, memory.snapshot())).toBe(true);
  });

  it("refuses a read of a write-only mapping and of a hole", () => {
    const { dom } = setup();
    dom.map(0, 0, K4, Perm.W);
    expect(code(() => dom.read(0, 1))).toBe("EPERM");
    expect(code(() => dom.read(K4, 1))).toBe("ENOENT");
    expect(code(() => dom.read(0, 0))).toBe("EINVAL");
  });

  it("refuses with EFAULT a mapping of something that is not RAM, writing nothing", () => {
    const { dom, memory } = setup();
    dom.map(0, 0x1000, K4, RW);
    dom.map(K4, 2 ** 40, K4, RW);
    const before = memory.snapshot();
    expect(code(() => dom.write(0, bytes(2 * K4)))).toBe("EFAULT");
    expect(code(() => dom.read(K4, 4))).toBe("EFAULT");
    expect(PhysicalMemory.sameContents(before, memory.snapshot())).toBe(true);
    // Pinning does not touch memory: it still hands out the page.
    expect(dom.pin(K4, K4, false)).toEqual([2 ** 40]);
  });

  it("handles a 1 MiB transfer spanning many pages", () => {
    const { dom } = setup();
    dom.map(0, 0x100_0000, 0x10_0000 + K4, RW);
    const data = bytes(0x10_0000, 3);
    dom.write(0x123, data);
    expect(Buffer.from(dom.read(0x123, data.length)).equals(data)).toBe(true);
  });
});

describe("dirty tracking", () => {
  it("marks pages written through write() and write pins while tracking", () => {
    const { dom } = setup({ dirtyTracking: true });
    dom.map(0, 0x10_0000, 8 * K4, RW);
    dom.write(K4 - 1, Uint8Array.of(1, 2));
    dom.setDirtyTracking(true);
    dom.write(K4 - 1, Uint8Array.of(1, 2));
    dom.pin(5 * K4, K4, true);
    dom.pin(6 * K4, K4, false);
    const bm = new Uint8Array(1);
    dom.readDirty(0, 8 * K4, 12, bm, true);
    expect(bm[0]).toBe(0b0010_0011);
  });

  it("clears on read unless noClear", () => {
    const { dom } = setup({ dirtyTracking: true });
    dom.setDirtyTracking(true);
    dom.map(0, 0x10_0000, 2 * K4, RW);
    dom.write(K4, Uint8Array.of(9));
    const a = new Uint8Array(1);
    dom.readDirty(0, 2 * K4, 12, a, true);
    expect(a[0]).toBe(2);
    const b = new Uint8Array(1);
    dom.readDirty(0, 2 * K4, 12, b, false);
    expect(b[0]).toBe(2);
    const c = new Uint8Array(1);
    dom.readDirty(0, 2 * K4, 12, c, false);
    expect(c[0]).toBe(0);
  });

  it("reports in larger bitmap pages and offsets from iova", () => {
    const { dom } = setup({ dirtyTracking: true });
    dom.setDirtyTracking(true);
    dom.map(0, 0x10_0000, 0x4_0000, RW);
    dom.write(0x2_1000, Uint8Array.of(1));
    const bm = new Uint8Array(2);
    // 16 KiB bitmap pages starting at 0x10000: 0x21000 is in page (0x21000-0x10000)/0x4000 = 4.
    dom.readDirty(0x1_0000, 0x3_0000, 14, bm, false);
    expect([...bm]).toEqual([0b1_0000, 0]);
  });

  it("reports in bitmap pages smaller than 4 KiB: every sub-page of a dirty page", () => {
    const { dom } = setup({ dirtyTracking: true });
    dom.setDirtyTracking(true);
    dom.map(0, 0x10_0000, 2 * K4, RW);
    dom.write(K4 + 5, Uint8Array.of(1));
    const bm = new Uint8Array(1);
    dom.readDirty(0, 2 * K4, 11, bm, false);
    expect(bm[0]).toBe(0b1100);
  });

  it("a read or a read pin never marks dirty", () => {
    const { dom } = setup({ dirtyTracking: true });
    dom.setDirtyTracking(true);
    dom.map(0, 0x10_0000, K4, RW);
    dom.read(0, 16);
    dom.pin(0, K4, false);
    const bm = new Uint8Array(1);
    dom.readDirty(0, K4, 12, bm, false);
    expect(bm[0]).toBe(0);
  });

  it("switching tracking on clears stale dirty state; off stops marking", () => {
    const { dom } = setup({ dirtyTracking: true });
    dom.map(0, 0x10_0000, K4, RW);
    dom.setDirtyTracking(true);
    dom.write(0, Uint8Array.of(1));
    dom.setDirtyTracking(false);
    dom.setDirtyTracking(true);
    const bm = new Uint8Array(1);
    dom.readDirty(0, K4, 12, bm, true);
    expect(bm[0]).toBe(0);
    dom.setDirtyTracking(false);
    dom.write(0, Uint8Array.of(1));
    dom.readDirty(0, K4, 12, bm, true);
    expect(bm[0]).toBe(0);
  });

  it("refuses without the dirtyTracking flag, and bad bitmap arguments", () => {
    const { dom } = setup();
    expect(code(() => dom.setDirtyTracking(true))).toBe("EINVAL");
    expect(code(() => dom.readDirty(0, K4, 12, new Uint8Array(1), false))).toBe("EINVAL");
    const t = setup({ dirtyTracking: true }).dom;
    expect(code(() => t.readDirty(0, 16 * K4, 12, new Uint8Array(1), false))).toBe("EINVAL");
    expect(code(() => t.readDirty(0x800, K4, 12, new Uint8Array(1), false))).toBe("EINVAL");
    expect(code(() => t.readDirty(0, K4, 53, new Uint8Array(1), false))).toBe("EINVAL");
  });
});

describe("unmap callbacks", () => {
  it("the ready-made mdev unpins in its callback, so a pinned range unmaps", () => {
    const f = setup();
    addMdev(f, 1);
    f.mdev.attach(1, Intent.emulated, f.dom);
    f.dom.map(0, 0x10_0000, 4 * K4, RW);
    f.dom.pin(K4, 2 * K4, false);
    f.dom.pin(K4, K4, false);
    expect(f.dom.unmap(0, 4 * K4)).toBe(4 * K4);
    expect(f.dom.pinCount()).toBe(0);
  });

  it("calls every attached mdev's callback with the pinned span, in attach order", () => {
    const f = setup();
    addMdev(f, 1);
    addMdev(f, 2);
    const calls: string[] = [];
    f.mdev.setUnmapCallback(1, (iova, len) => calls.push(`1:${iova.toString(16)}+${len.toString(16)}`));
    f.mdev.setUnmapCallback(2, (iova, len) => {
      calls.push(`2:${iova.toString(16)}+${len.toString(16)}`);
      f.dom.unpin(iova, len);
    });
    f.mdev.attach(1, Intent.emulated, f.dom);
    f.mdev.attach(2, Intent.emulated, f.dom);
    f.dom.map(0, 0x10_0000, 8 * K4, RW);
    f.dom.pin(2 * K4, 3 * K4, false);
    expect(f.dom.unmap(0, 8 * K4)).toBe(8 * K4);
    expect(calls).toEqual(["1:2000+3000", "2:2000+3000"]);
  });

  it("fails with EBUSY and changes nothing when pins remain after the callbacks", () => {
    const f = setup();
    addMdev(f, 1);
    let called = 0;
    f.mdev.setUnmapCallback(1, () => {
      called++;
    });
    f.mdev.attach(1, Intent.emulated, f.dom);
    f.dom.map(0, 0x10_0000, 2 * K4, RW);
    f.dom.pin(K4, K4, false);
    expect(code(() => f.dom.unmap(0, 2 * K4))).toBe("EBUSY");
    expect(called).toBe(1);
    expect(f.dom.iovaToPhys(0)).toBe(0x10_0000);
    expect(f.dom.pinCount()).toBe(1);
    // Unpinned ranges still unmap without the callback.
    expect(f.dom.unmap(0, K4)).toBe(K4);
    expect(called).toBe(1);
    f.mdev.setUnmapCallback(1, null);
    expect(f.dom.unmap(K4, K4)).toBe(K4);
  });

  it("a pinned domain with no mdev attached refuses the unmap", () => {
    const { dom } = setup();
    dom.map(0, 0, K4, RW);
    dom.pin(0, K4, false);
    expect(code(() => dom.unmap(0, K4))).toBe("EBUSY");
  });
});

describe("free", () => {
  it("refuses while attached or pinned, then frees once", () => {
    const f = setup();
    addMdev(f, 1);
    f.mdev.attach(1, Intent.emulated, f.dom);
    expect(code(() => f.dom.free())).toBe("EBUSY");
    f.mdev.detach(1, Intent.emulated);
    f.dom.map(0, 0, K4, RW);
    f.dom.pin(0, K4, false);
    expect(code(() => f.dom.free())).toBe("EBUSY");
    f.dom.unpin(0, K4);
    f.dom.free();
    expect(f.dom.freed).toBe(true);
    expect(code(() => f.dom.free())).toBe("EINVAL");
    expect(code(() => f.dom.map(0, 0, K4, RW))).toBe("EINVAL");
    expect(code(() => f.dom.read(0, 1))).toBe("EINVAL");
    expect(f.dom.iovaToPhys(0)).toBe(-1);
    expect(f.dom.table.chunks.size).toBe(0);
  });

  it("keeps flag bits per entry: V and the permissions", () => {
    const { dom } = setup();
    dom.map(0, 0, K4, Perm.R | Perm.X);
    expect(dom.table.flagsAt(0)).toBe(EntryBit.V | EntryBit.R | EntryBit.X);
  });
});
