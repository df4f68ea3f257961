import { describe, expect, it } from "vitest";
import {
  CHUNK_PAGES,
  chunkOf,
  EmulatedTable,
  EntryBit,
  LEAF_SIZES_LG2,
  leafLg2,
  sizeBits,
  slotOf,
} from "../../src/format/emulated-table.ts";

const K4 = 0x1000;

describe("emulated table format", () => {
  it("splits an IOVA into chunk (bits 47:21) and slot (bits 20:12)", () => {
    expect(chunkOf(0)).toBe(0);
    expect(chunkOf(0x1f_ffff)).toBe(0);
    expect(chunkOf(0x20_0000)).toBe(1);
    expect(chunkOf(2 ** 48 - 1)).toBe(2 ** 27 - 1);
    expect(slotOf(0x1f_f000)).toBe(511);
    expect(slotOf(0x20_1fff)).toBe(1);
    // Above 2^32 the slot still comes from bits 20:12.
    expect(slotOf(2 ** 40 + 0x5000)).toBe(5);
    expect(CHUNK_PAGES).toBe(512);
  });

  it("encodes the leaf size in bits 6:5", () => {
    expect(LEAF_SIZES_LG2).toEqual([12, 21, 30]);
    expect(sizeBits(12)).toBe(0);
    expect(sizeBits(21)).toBe(0x20);
    expect(sizeBits(30)).toBe(0x40);
    for (const s of LEAF_SIZES_LG2) expect(leafLg2(sizeBits(s) | EntryBit.V | EntryBit.D)).toBe(s);
    expect(EntryBit).toMatchObject({ R: 1, W: 2, X: 4, V: 8, D: 16 });
  });

  it("creates chunks on set and drops them when emptied", () => {
    const t = new EmulatedTable();
    t.set(0x20_0000, 0x9000, EntryBit.R);
    t.set(0x20_1000, 0xa000, EntryBit.R);
    expect(t.chunks.size).toBe(1);
    expect(t.pages).toBe(2);
    expect(t.lookup(0x20_1234)).toBe(0xa234);
    expect(t.flagsAt(0x20_0000)).toBe(EntryBit.R | EntryBit.V);
    t.set(0x20_0000, 0xb000, EntryBit.W);
    expect(t.pages).toBe(2);
    t.clear(0x20_0000);
    t.clear(0x20_0000);
    expect(t.pages).toBe(1);
    t.clear(0x20_1000);
    expect(t.chunks.size).toBe(0);
    expect(t.lookup(0x20_1234)).toBe(-1);
  });

  it("visits present pages ascending, whichever way it walks", () => {
    const t = new EmulatedTable();
    const pages = [0x5000, 0x1_0000_0000, 0x20_3000, 0x7f_0000_0000];
    for (const p of pages) t.set(p, p, EntryBit.R);
    const seen: number[] = [];
    // Short range: walks chunk by chunk.
    t.forEachPresent(0, 0x40_0000, (at) => seen.push(at));
    expect(seen).toEqual([0x5000, 0x20_3000]);
    seen.length = 0;
    // Huge range: walks the directory, sorted.
    t.forEachPresent(0, 2 ** 48, (at) => seen.push(at));
    expect(seen).toEqual([0x5000, 0x20_3000, 0x1_0000_0000, 0x7f_0000_0000]);
    expect(t.anyPresent(0x6000, 0x20_3000)).toBe(false);
    expect(t.anyPresent(0x6000, 0x20_4000)).toBe(true);
  });

  it("counts pins per page and in total", () => {
    const t = new EmulatedTable();
    t.set(0, 0, EntryBit.R);
    const c = t.chunkAt(0)!;
    expect(c.pins).toBeNull();
    t.addPin(c, 0, 1);
    t.addPin(c, 0, 1);
    expect(t.pinsAt(0)).toBe(2);
    expect(t.pins).toBe(2);
    expect(t.pinsAt(K4)).toBe(0);
    t.reset();
    expect([t.pins, t.pages, t.chunks.size]).toEqual([0, 0, 0]);
  });
});
