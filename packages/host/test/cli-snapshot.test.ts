import { Access, createTranslation, NO_PASID, PhysicalMemory } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { UsageError } from "../src/cli/errors.ts";
import {
  elfSegments,
  memoryFromSegments,
  parseMemoryArg,
  parseRegisters,
  ramRegionsFor,
  segmentsOf,
} from "../src/cli/snapshot.ts";
import { parseRequest, parseRequests, translateOne } from "../src/cli/translate.ts";
import { buildElfCore } from "./cli-fixtures/elf.ts";
// @ts-expect-error: a plain-JS test plugin without types.
import { flatBackend } from "./cli-fixtures/flat-backend.mjs";

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);

describe("memory images", () => {
  it("parses FILE@BASE with hex or decimal bases", () => {
    expect(parseMemoryArg("mem.bin@0x80000000")).toEqual({ file: "mem.bin", base: 0x80000000 });
    expect(parseMemoryArg("mem.bin@4096")).toEqual({ file: "mem.bin", base: 4096 });
    expect(parseMemoryArg("a@b/mem.bin")).toEqual({ file: "a@b/mem.bin", base: null });
    expect(parseMemoryArg("core.elf")).toEqual({ file: "core.elf", base: null });
    expect(() => parseMemoryArg("mem.bin@0xzz")).toThrow(UsageError);
  });

  it("reads an ELF core's PT_LOAD segments at their physical addresses", () => {
    const core = buildElfCore([
      { paddr: 0x1000, data: bytes(1, 2, 3, 4) },
      { paddr: 0x100000, data: bytes(9), memsz: 0x2000 },
    ]);
    const segs = elfSegments(core, "core");
    expect(segs.map((s) => [s.base, s.size, [...s.data]])).toEqual([
      [0x1000, 4, [1, 2, 3, 4]],
      [0x100000, 0x2000, [9]],
    ]);
    const mem = memoryFromSegments(segs);
    expect([...mem.read(0x1000, 4)]).toEqual([1, 2, 3, 4]);
    expect(mem.read32(0x100ffc)).toBe(0); // memsz beyond filesz is zero RAM
    expect(mem.read32(0x102000)).toBe(-1); // outside every segment: bus error
    expect(mem.read32(0x3000)).toBe(-1);
  });

  it("reads the program header count from section 0 when e_phnum is PN_XNUM", () => {
    const core = buildElfCore([{ paddr: 0x2000, data: bytes(7) }], { xnum: true });
    expect(elfSegments(core, "x").map((s) => s.base)).toEqual([0x2000]);
  });

  it("refuses broken ELF files with one clear line", () => {
    const core = buildElfCore([{ paddr: 0x2000, data: bytes(7, 7, 7, 7) }]);
    expect(() => elfSegments(core.subarray(0, 64 + 56 + 10), "t")).toThrow(
      /program header 1 is past the end/,
    );
    const be = core.slice();
    be[5] = 2;
    expect(() => elfSegments(be, "t")).toThrow(/little-endian/);
    const c32 = core.slice();
    c32[4] = 1;
    expect(() => elfSegments(c32, "t")).toThrow(/ELF64/);
    const cut = core.slice(0, core.length - 2);
    expect(() => elfSegments(cut, "t")).toThrow(/past the end of the file/);
  });

  it("treats a file with a base as raw even when it looks like ELF", () => {
    const core = buildElfCore([{ paddr: 0x2000, data: bytes(7) }]);
    expect(segmentsOf(core, "c", 0x5000)).toEqual([
      { base: 0x5000, size: core.length, data: core, source: "c" },
    ]);
    expect(segmentsOf(core, "c", null)[0]!.base).toBe(0x2000);
  });

  it("merges touching and overlapping images into page-aligned RAM regions", () => {
    const seg = (base: number, size: number) => ({ base, size, data: new Uint8Array(0), source: "s" });
    expect(ramRegionsFor([seg(0x1000, 0x1000), seg(0x2000, 10), seg(0x10_0010, 0x10)])).toEqual([
      { base: 0x1000, size: 0x2000, name: "snapshot0" },
      { base: 0x100000, size: 0x1000, name: "snapshot1" },
    ]);
  });

  it("later images win where they overlap", () => {
    const mem = memoryFromSegments([
      { base: 0, size: 4, data: bytes(1, 1, 1, 1), source: "a" },
      { base: 2, size: 2, data: bytes(2, 2), source: "b" },
    ]);
    expect([...mem.read(0, 4)]).toEqual([1, 1, 2, 2]);
  });
});

describe("registers", () => {
  const defaults = { CR0: 0n, STRTAB_BASE: 0n };
  it("takes hex strings and numbers over the defaults, case-insensitively", () => {
    expect(parseRegisters({ cr0: 1, STRTAB_BASE: "0x80000000" }, defaults, "r")).toEqual({
      CR0: 1n,
      STRTAB_BASE: 0x80000000n,
    });
    expect(parseRegisters({}, defaults, "r")).toEqual(defaults);
  });
  it("refuses unknown names, listing the known ones", () => {
    expect(() => parseRegisters({ CR9: 1 }, defaults, "r.json")).toThrow(
      'r.json: /CR9: unknown register "CR9" (known: CR0, STRTAB_BASE)',
    );
  });
  it("refuses bad values", () => {
    expect(() => parseRegisters({ CR0: "one" }, defaults, "r")).toThrow(/not a number/);
    expect(() => parseRegisters({ CR0: -1 }, defaults, "r")).toThrow(/not a number/);
    expect(() => parseRegisters({ CR0: "0x10000000000000000" }, defaults, "r")).toThrow(/64 bits/);
    expect(() => parseRegisters([], defaults, "r")).toThrow(/JSON object/);
  });
});

describe("translate requests", () => {
  it("parses a request line", () => {
    const r = parseRequest(
      '{"sid": 16, "pasid": null, "iova": "0x1000", "access": "write", "priv": true}',
      "l1",
    );
    expect(r).toMatchObject({ sid: 16, pasid: null, iova: 0x1000n, access: "write", priv: true });
  });
  it("names the line and the field of a bad request", () => {
    expect(() => parseRequests('{"sid": 1, "iova": "0x0"}\n\n{"sid": 1, "iova": "zz"}', "req")).toThrow(
      /^req line 3: iova/,
    );
    expect(() => parseRequest('{"sid": 1, "iova": 0, "acess": "read"}', "l")).toThrow(
      /unknown field "acess"/,
    );
    expect(() => parseRequest('{"iova": 0}', "l")).toThrow(/sid is required/);
    expect(() => parseRequest('{"sid": 1, "iova": 0, "access": "rw"}', "l")).toThrow(/access must be/);
    expect(() => parseRequest("[1]", "l")).toThrow(/JSON object/);
    expect(() => parseRequest("{", "l")).toThrow(/not valid JSON/);
  });

  it("translates against a snapshot backend: pa + perm, or the fault", () => {
    const mem = new PhysicalMemory([{ base: 0, size: 0x100000 }]);
    mem.write64(0x8000 + 1 * 8, 0x42000n | 3n); // page 1 -> 0x42000 rw
    mem.write64(0x8000 + 2 * 8, 0x43000n | 1n); // page 2 -> 0x43000 read-only
    const b = flatBackend.fromRegisters(mem, { TABLE: 0x8000n, ENABLE: 1n });
    const t = (line: string) => translateOne(b, parseRequest(line, "l"));
    expect(t('{"sid": 0, "iova": "0x1010"}')).toEqual({ sid: 0, iova: "0x1010", pa: "0x42010", perm: "rw" });
    expect(t('{"sid": 0, "iova": "0x2000", "access": "write"}')).toEqual({
      sid: 0,
      iova: "0x2000",
      access: "write",
      fault: { class: "permission", name: "READ_ONLY", code: 2, recorded: true, vendor: "flat", fields: {} },
    });
    expect(t('{"sid": 0, "iova": "0x3000"}').fault).toEqual({
      class: "translation",
      name: "NOT_PRESENT",
      code: 1,
      recorded: true,
      vendor: "flat",
      fields: {},
    });
    // Above 2^53 without translateBig: reported per line, not a crash.
    expect(t('{"sid": 0, "iova": "0xff00000000000000"}').error).toMatch(/2\^53/);
    const out = createTranslation();
    expect(b.translate(0, NO_PASID, 0x1000, Access.READ, out)).toBe(true);
  });
});
