import { describe, expect, it } from "vitest";
import { dumpText, walkTable } from "../src/cli/dump-text.ts";

describe("dump text", () => {
  it("prints page walks as the debugfs table, one line per page", () => {
    const rows = [
      {
        IOVA_PFN: "0x100",
        size: "2^12",
        entries: { PML4E: "0x0000000000019003", PTE: "0x0000000001000003" },
      },
      { IOVA_PFN: 0x101, entries: { PML4E: "0x0000000000019003", PTE: 0x1001003 } },
    ];
    expect(walkTable(rows).split("\n")).toEqual([
      "IOVA_PFN          PML4E               PTE",
      "0x0000000000100 | 0x0000000000019003  0x0000000001000003",
      "0x0000000000101 | 0x0000000000019003  0x0000000001001003",
    ]);
  });
  it("keeps everything else as YAML", () => {
    const text = dumpText({
      mode: "legacy",
      devices: [{ sid: "00:01.0", translation: [{ IOVA_PFN: 1, entries: { PTE: 3 } }] }],
    });
    expect(text).toContain("mode: legacy\n");
    expect(text).toContain("translation: |-\n");
    expect(text).toContain("0x0000000000001 | 0x0000000000000003");
    expect(dumpText("as is")).toBe("as is\n");
  });
});
