import { describe, expect, it } from "vitest";
import { capTable, humanReport, stepJson, stepLine, table } from "../src/cli/report.ts";
import type { FileReport, StepRecord } from "../src/scenario/runner.ts";

const ok: StepRecord = {
  file: "f.json",
  step: 1,
  label: "nic reads",
  op: "dma",
  args: { device: "nic", iova: "0x1000", access: "read" },
  outcome: { kind: "result", result: { pa: "0x2000", data: "abcd" } },
  expect: { pa: "0x2000" },
  pass: true,
  mismatches: [],
};
const fault = {
  class: "translation",
  name: "F_TRANSLATION",
  code: 16,
  recorded: true,
  vendor: "arm-smmuv3",
  fields: { StreamID: 16 },
};
const bad: StepRecord = {
  ...ok,
  step: 2,
  label: "nic reads unmapped",
  outcome: { kind: "fault", fault, result: { fault } },
  expect: { pa: "0x3000" },
  pass: false,
  mismatches: ["expected no fault, got F_TRANSLATION (0x10, translation)"],
};

describe("report", () => {
  it("aligns table columns", () => {
    expect(table(["a", "bb"], [["xxx", "y"]])).toBe("a    bb\n---  --\nxxx  y");
  });
  it("prints a DMA translation on one line", () => {
    expect(stepLine(ok)).toBe('ok     1 nic reads: read iova 0x1000 -> pa 0x2000 data "abcd"');
  });
  it("prints a failing step with expected vs actual", () => {
    expect(stepLine(bad).split("\n")).toEqual([
      "FAIL   2 nic reads unmapped: FAULT F_TRANSLATION (0x10, translation) [StreamID=16]",
      '  expected: {"pa":"0x3000"}',
      "    expected no fault, got F_TRANSLATION (0x10, translation)",
    ]);
  });
  it("--json carries file, step, op, result or fault, expect and pass", () => {
    expect(JSON.parse(stepJson(ok))).toEqual({
      file: "f.json",
      step: 1,
      name: "nic reads",
      op: "dma",
      result: { pa: "0x2000", data: "abcd" },
      expect: { pa: "0x2000" },
      pass: true,
    });
    expect(JSON.parse(stepJson(bad))).toMatchObject({ fault: { name: "F_TRANSLATION" }, pass: false });
    const err: StepRecord = {
      ...ok,
      outcome: { kind: "error", error: { code: "EBUSY", message: "EBUSY: x" } },
      pass: false,
    };
    expect(JSON.parse(stepJson(err)).error).toEqual({ code: "EBUSY", message: "EBUSY: x" });
  });
  it("a file report has capabilities, steps, faults, counters and the verdict naming failed steps", () => {
    const rep: FileReport = {
      file: "f.json",
      name: "demo",
      caps: [
        {
          device: "nic",
          iommu: "smmu0",
          backend: "smmuv3",
          rid: 16,
          intents: ["rid", "pasid"],
          maxPasidLog2: 20,
          pasidAssignment: "caller",
          inputAddressBits: 48,
          outputAddressBits: 48,
          formats: ["a", "b", "c"],
          flags: ["dirty_tracking"],
          nesting: true,
          hwInfo: "IDR0=0x1",
        },
      ],
      steps: [ok, bad],
      counters: {
        smmu0: { iotlbHits: 1, iotlbMisses: 2, configHits: 3, configMisses: 4, walks: 5, invalidations: 6 },
      },
      pass: false,
    };
    process.env.COLUMNS = "300"; // tables fit $COLUMNS (default 80)
    const text = humanReport(rep);
    expect(text).toContain("== f.json (demo)");
    expect(text).toMatch(
      /nic\s+smmu0\s+smmuv3\s+0x10\s+rid,pasid\s+20 bits\s+48\/48\s+a \+2\s+dirty_tracking,nesting\s+IDR0=0x1/,
    );
    expect(text).toContain("  step 2: F_TRANSLATION (0x10, translation) [StreamID=16]");
    expect(text).toMatch(/smmu0\s+1\s+2\s+3\s+4\s+5\s+6/);
    expect(text.endsWith("FAIL f.json: 1 of 2 steps failed (step 2 nic reads unmapped)")).toBe(true);
    expect(capTable(rep.caps).split("\n")).toHaveLength(3);
    delete process.env.COLUMNS;
  });
});
