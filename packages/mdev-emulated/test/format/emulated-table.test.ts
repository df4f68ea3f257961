import { describe, expect, it } from "vitest";
import {
  CHUNK_PAGES,
  CHUNK_USED,
  chunkOf,
  EmulatedTable,
  EntryBit,
  entryFlags,
  entryPa,
  LEAF_SIZES_LG2,
  leafLg2,
  pageOffset,
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

  it("encodes an entry as the page address plus the flags in bits 11:0", () => {
    const t = new EmulatedTable();
    t.set(0x7000, 2 ** 51 + 0x3000, EntryBit.R | sizeBits(12));
    const e = t.entryAt(0x7000);
    expect(e).toBe(2 ** 51 + 0x3000 + (EntryBit.R | EntryBit.V));
    expect(entryFlags(e)).toBe(EntryBit.R | EntryBit.V);
    expect(entryPa(e)).toBe(2 ** 51 + 0x3000);
    expect(t.lookup(0x7abc)).toBe(2 ** 51 + 0x3abc);
    expect(pageOffset(2 ** 52 + 0x1234)).toBe(0x234);
    t.set(0x7000, 0x5000, EntryBit.W | sizeBits(21));
    expect(t.entryAt(0x7000)).toBe(0x5000 + (EntryBit.W | EntryBit.V | 0x20));
    expect(t.chunks.get(0)![CHUNK_USED]).toBe(1);
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
    expect(t.pinCounts.size).toBe(0);
    t.addPin(0, 1);
    t.addPin(0xfff, 1);
    expect(t.pinsAt(0)).toBe(2);
    expect(t.pins).toBe(2);
    expect(t.pinsAt(K4)).toBe(0);
    t.clear(0);
    expect(t.pinCounts.size).toBe(0);
    t.set(0, 0, EntryBit.R);
    t.addPin(0, 1);
    t.reset();
    expect([t.pins, t.pages, t.chunks.size, t.pinCounts.size]).toEqual([0, 0, 0, 0]);
  });
});
