import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IommuError, PhysicalMemory } from "../src/index.ts";

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

const REGIONS = [
  { base: 0, size: 0x10000 },
  { base: 0x20000, size: 0x3000 },
];

describe("PhysicalMemory", () => {
  it("reads never-written RAM as zeros and outside RAM as a bus error", () => {
    const m = new PhysicalMemory(REGIONS);
    expect(m.read32(0x1000)).toBe(0);
    expect(m.read32(0x10000)).toBe(-1);
    expect(m.read32(0x22ffc)).toBe(0);
    expect(m.read32(0x23000)).toBe(-1);
    expect(m.readPage(0x10)).toBeNull();
    expect(m.isRamRange(0xf000, 0x1000)).toBe(true);
    expect(m.isRamRange(0xf000, 0x1001)).toBe(false);
    expect(m.residentPages).toBe(0);
  });

  it("stores little-endian words and 64-bit values as halves", () => {
    const m = new PhysicalMemory(REGIONS);
    m.write64(0x2008, 0x1122334455667788n);
    expect(m.read32(0x2008)).toBe(0x55667788);
    expect(m.read32(0x200c)).toBe(0x11223344);
    expect([...m.read(0x2008, 8)]).toEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    expect(m.read64(0x2008)).toBe(0x1122334455667788n);
    expect(m.write32(0x10000, 1)).toBe(false);
  });

  it("refuses a byte range that leaves RAM with EFAULT and writes nothing", () => {
    const m = new PhysicalMemory(REGIONS);
    const before = m.snapshot();
    expect(() => m.write(0xfffe, Uint8Array.of(1, 2, 3, 4))).toThrowError(IommuError);
    try {
      m.write(0xfffe, Uint8Array.of(1, 2, 3, 4));
    } catch (e) {
      expect((e as IommuError).code).toBe("EFAULT");
      expect((e as IommuError).details.pa).toBe(0xfffe);
    }
    expect(PhysicalMemory.sameContents(before, m.snapshot())).toBe(true);
    expect(m.read(0xfffe, 2)).toEqual(new Uint8Array(2));
  });

  it("rejects bad memory maps", () => {
    expect(() => new PhysicalMemory([{ base: 0x800, size: 0x1000 }])).toThrowError(/page-aligned/);
    expect(
      () =>
        new PhysicalMemory([
          { base: 0, size: 0x2000 },
          { base: 0x1000, size: 0x1000 },
        ]),
    ).toThrowError(/overlaps/);
    expect(() => new PhysicalMemory([{ base: 2 ** 52, size: 0x1000 }])).toThrowError(/2\^52/);
  });

  it("handles addresses above 4 GiB", () => {
    const m = new PhysicalMemory([{ base: 0xf_ffff_0000, size: 0x20000 }]);
    m.write32(0xf_ffff_fffc, 0xdeadbeef);
    m.write32(0x10_0000_0000, 0xcafef00d);
    expect(m.read32(0xf_ffff_fffc)).toBe(0xdeadbeef);
    expect(m.read32(0x10_0000_0000)).toBe(0xcafef00d);
    expect(m.residentFrames()).toEqual([0xffffff, 0x1000000]);
  });

  it("zero-filling whole pages releases them; the slab slot is reused", () => {
    const m = new PhysicalMemory(REGIONS);
    m.fill(0x3000, 0x2000, 0xaa);
    expect(m.residentPages).toBe(2);
    m.fill(0x3000, 0x2000, 0);
    expect(m.residentPages).toBe(0);
    expect(m.read32(0x3000)).toBe(0);
    m.write32(0x5000, 7);
    expect(m.read32(0x5000)).toBe(7);
    expect(m.read32(0x5004)).toBe(0);
  });

  it("readRange / writeRange: EINVAL for a span outside the buffer, nothing copied", () => {
    const m = new PhysicalMemory(REGIONS);
    m.write(0x1000, new Uint8Array(16).fill(7));
    const buf = new Uint8Array(8).fill(1);
    for (const [at, n] of [
      [0, 9],
      [8, 1],
      [-1, 2],
      [0.5, 2],
      [0, -1],
      [0, Number.NaN],
    ] as const) {
      expect(() => m.readRange(0x1000, buf, at, n)).toThrowError(/EINVAL/);
      expect(() => m.writeRange(0x1000, buf, at, n)).toThrowError(/EINVAL/);
    }
    expect(buf).toEqual(new Uint8Array(8).fill(1));
    expect(m.read(0x1000, 16)).toEqual(new Uint8Array(16).fill(7));
  });

  it("a remembered run is forgotten when one of its pages is released and its slot reused", () => {
    const m = new PhysicalMemory([{ base: 0, size: 0x100000 }]);
    // Three pages written in order sit one after another in a slab: one run.
    m.write(0x3000, new Uint8Array(0x3000).fill(0x11));
    const out = new Uint8Array(0x3000);
    m.readRange(0x3000, out, 0, 0x3000);
    expect(out).toEqual(new Uint8Array(0x3000).fill(0x11));
    // Releasing the middle page and writing another frame hands that frame the released
    // slab slot: the run's middle now belongs to frame 0x9 (written by word, which
    // leaves the remembered run alone).
    m.fill(0x4000, 0x1000, 0);
    m.write32(0x9000, 0x99999999);
    m.readRange(0x3000, out, 0, 0x3000);
    const want = new Uint8Array(0x3000).fill(0x11);
    want.fill(0, 0x1000, 0x2000);
    expect(out).toEqual(want);
    m.writeRange(0x4000, new Uint8Array(0x1000).fill(0x44), 0, 0x1000);
    expect(m.read32(0x9000)).toBe(0x99999999);
    expect(m.read(0x4000, 0x1000)).toEqual(new Uint8Array(0x1000).fill(0x44));
  });

  it("matches a byte-array reference under random reads and writes (property)", () => {
    const size = 0x10000;
    const addr = fc.integer({ min: 0, max: size + 0x100 });
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("w" as const),
        pa: addr,
        data: fc.uint8Array({ minLength: 0, maxLength: 5000 }),
      }),
      fc.record({ kind: fc.constant("r" as const), pa: addr, len: fc.integer({ min: 0, max: 9000 }) }),
      fc.record({
        kind: fc.constant("f" as const),
        pa: addr,
        len: fc.integer({ min: 0, max: 9000 }),
        byte: fc.integer({ min: 0, max: 255 }),
      }),
      // readRange / writeRange at an offset of a larger buffer; `again` repeats the read
      // (the remembered run answers the second one).
      fc.record({
        kind: fc.constant("rr" as const),
        pa: addr,
        len: fc.integer({ min: 0, max: 9000 }),
        at: fc.integer({ min: 0, max: 64 }),
        again: fc.boolean(),
      }),
      fc.record({
        kind: fc.constant("wr" as const),
        pa: addr,
        data: fc.uint8Array({ minLength: 0, maxLength: 9000 }),
        at: fc.integer({ min: 0, max: 64 }),
      }),
      fc.record({
        kind: fc.constant("w32" as const),
        pa: addr.map((a) => a & ~3),
        v: fc.integer({ min: 0, max: 0xffffffff }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const m = new PhysicalMemory([{ base: 0, size }]);
        const ref = new Uint8Array(size);
        for (const o of ops) {
          if (o.kind === "w") {
            const fits = o.data.length === 0 || o.pa + o.data.length <= size; // zero bytes touch no memory
            if (fits) {
              m.write(o.pa, o.data);
              if (o.data.length > 0) ref.set(o.data, o.pa);
            } else expect(() => m.write(o.pa, o.data)).toThrowError(/EFAULT/);
          } else if (o.kind === "r") {
            if (o.len === 0 || o.pa + o.len <= size)
              expect(same(m.read(o.pa, o.len), ref.subarray(o.pa, o.pa + o.len))).toBe(true);
            else expect(() => m.read(o.pa, o.len)).toThrowError(/EFAULT/);
          } else if (o.kind === "f") {
            if (o.len === 0 || o.pa + o.len <= size) {
              m.fill(o.pa, o.len, o.byte);
              ref.fill(o.byte, o.pa, o.pa + o.len);
            } else expect(() => m.fill(o.pa, o.len, o.byte)).toThrowError(/EFAULT/);
          } else if (o.kind === "rr") {
            const buf = new Uint8Array(o.at + o.len + 7).fill(0xee);
            const want = buf.slice();
            if (o.len === 0 || o.pa + o.len <= size) {
              want.set(ref.subarray(o.pa, o.pa + o.len), o.at);
              m.readRange(o.pa, buf, o.at, o.len);
              expect(same(buf, want)).toBe(true);
              if (o.again) {
                buf.fill(0xee);
                m.readRange(o.pa, buf, o.at, o.len);
                expect(same(buf, want)).toBe(true);
              }
            } else {
              expect(() => m.readRange(o.pa, buf, o.at, o.len)).toThrowError(/EFAULT/);
              expect(same(buf, want)).toBe(true);
            }
          } else if (o.kind === "wr") {
            const src = new Uint8Array(o.at + o.data.length + 3);
            src.set(o.data, o.at);
            if (o.data.length === 0 || o.pa + o.data.length <= size) {
              m.writeRange(o.pa, src, o.at, o.data.length);
              if (o.data.length > 0) ref.set(o.data, o.pa);
            } else expect(() => m.writeRange(o.pa, src, o.at, o.data.length)).toThrowError(/EFAULT/);
          } else {
            const ok = m.write32(o.pa, o.v);
            expect(ok).toBe(o.pa + 4 <= size);
            if (ok) new DataView(ref.buffer).setUint32(o.pa, o.v, true);
          }
        }
        expect(m.read(0, size)).toEqual(ref);
        for (let pa = 0; pa < size; pa += 0x404)
          expect(m.read32(pa & ~3)).toBe(new DataView(ref.buffer).getUint32(pa & ~3, true));
      }),
      { numRuns: Number(process.env.MEM_RUNS ?? 30) },
    );
  });
});
