import { describe, expect, it } from "vitest";
import { dumpText, walkTable } from "../src/cli/dump-text.ts";
import { hex, jsonOut, permLetters, stepName, stepNote, stepOut, table, wrap } from "../src/cli/format.ts";

describe("CLI formatting rules", () => {
  it("prints numbers hex and permissions as letters", () => {
    expect(hex(0x1000)).toBe("0x1000");
    expect(hex(0n)).toBe("0x0");
    expect(hex(2n ** 63n)).toBe("0x8000000000000000");
    expect(permLetters(3)).toBe("rw");
    expect(permLetters(7)).toBe("rwx");
    expect(permLetters(0)).toBe("-");
  });

  it("names VT-d levels as the spec and debugfs do; SMMUv3 keeps VMSAv8-64 levels", () => {
    expect(["SS L4", "SS L3", "SS L2", "SS L1", "SS L0"].map((w) => stepName("vtd", w))).toEqual([
      "SS PML5E",
      "SS PML4E",
      "SS PDPE",
      "SS PDE",
      "SS PTE",
    ]);
    expect(stepName("vtd", "FS L3")).toBe("FS PML4E");
    expect(stepName("vtd", "SS(FS table) L0")).toBe("SS(FS table) PTE");
    expect(stepName("vtd", "context entry")).toBe("context entry");
    expect(stepName("smmuv3", "S1 L0")).toBe("S1 L0");
    expect(stepName("smmuv3", "S2 L3")).toBe("S2 L3");
  });

  it("never prints a pseudo fault code or a numeric permission in a step", () => {
    expect(stepNote("fault 0x-1: Unknown")).toBe(
      "blocked: abort-DMA mode (RTADDR.TTM = 11b), no fault recorded",
    );
    expect(stepNote("pa 0x1000 perm 3 size 2^12")).toBe("pa 0x1000 perm rw size 2^12");
    expect(stepNote("fault 0x6: PTE Read access is not set")).toBe("fault 0x6: PTE Read access is not set");
  });

  it("normalises a step: hex address, index out of fields, spec names", () => {
    expect(
      stepOut("vtd", { what: "SS L3", address: 0x2f44000, index: 0, raw: ["0x1003"], note: "table" }),
    ).toEqual({ what: "SS PML4E", address: "0x2f44000", index: 0, raw: ["0x1003"], note: "table" });
    expect(
      stepOut("smmuv3", { what: "S1 L0", address: 0x1000, fields: { index: 5 }, note: "table" }),
    ).toEqual({
      what: "S1 L0",
      address: "0x1000",
      index: 5,
      note: "table",
    });
  });

  it("prints numbers under address-like keys hex at any depth in JSON", () => {
    expect(
      jsonOut({
        address: 4096,
        sid: 16,
        devices: [{ context: { pasidDirPtr: 8192, slptptr: 0x3000, did: 1 } }],
        big: 2n ** 64n - 1n,
      }),
    ).toEqual({
      address: "0x1000",
      sid: 16,
      devices: [{ context: { pasidDirPtr: "0x2000", slptptr: "0x3000", did: 1 } }],
      big: "0xffffffffffffffff",
    });
  });

  it("fits tables to the width: the last column wraps, else one block per row", () => {
    const rows = [["1", "SS PML4E", "the last column is free text that wraps at spaces"]];
    expect(table(["#", "step", "result"], rows, 200)).toBe(
      [
        "#  step      result",
        "-  --------  -------------------------------------------------",
        "1  SS PML4E  the last column is free text that wraps at spaces",
      ].join("\n"),
    );
    const narrow = table(["#", "step", "result"], rows, 40).split("\n");
    expect(narrow.every((l) => l.length <= 40)).toBe(true);
    expect(narrow[2]).toBe("1  SS PML4E  the last column is free");
    expect(narrow[3]).toBe("             text that wraps at spaces");
    const records = table(["device", "flags"], [["nic", "a".repeat(30)]], 20);
    expect(records).toBe(`device  nic\nflags   ${"a".repeat(16)}\n        ${"a".repeat(14)}`);
    expect(wrap("abc def", 3)).toEqual(["abc", "def"]);
  });

  it("splits a debugfs walk table into tables that fit, each led by IOVA_PFN", () => {
    const rows = [{ IOVA_PFN: 1, entries: { PML4E: 1, PDPE: 2, PDE: 3, PTE: 4 } }];
    const wide = walkTable(rows);
    expect(wide.split("\n")).toHaveLength(2);
    const t = walkTable(rows, 60).split("\n");
    expect(t).toEqual([
      "IOVA_PFN          PML4E               PDPE",
      "0x0000000000001 | 0x0000000000000001  0x0000000000000002",
      "",
      "IOVA_PFN          PDE                 PTE",
      "0x0000000000001 | 0x0000000000000003  0x0000000000000004",
    ]);
    const text = dumpText({ devices: [{ translation: rows }] }, 80);
    expect(text.split("\n").every((l) => l.length <= 80)).toBe(true);
  });
});
