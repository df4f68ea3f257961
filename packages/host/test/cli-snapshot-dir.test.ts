/**
 * The CLI on real dumps (fixtures/snapshots: tables an unmodified Linux wrote under QEMU):
 * `--snapshot DIR` reads memory.jsonl, regs.json (extra register names included) and
 * expect.jsonl; `--check` agrees with every shipped snapshot; the same data given as
 * `--memory`/`--regs`, or the registers as Linux debugfs `iommu_regset` text, agrees too.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const FLAT = fileURLToPath(new URL("./cli-fixtures/flat-backend.mjs", import.meta.url));
const SNAPSHOTS = fileURLToPath(new URL("../../../fixtures/snapshots/", import.meta.url));
const snapshots = readdirSync(SNAPSHOTS, { withFileTypes: true })
  .filter((e) => e.isDirectory() && e.name !== "tools")
  .map((e) => e.name)
  .sort();
const VTD = join(SNAPSHOTS, "vtd-legacy-qemu72-linux61");
const SMMU = join(SNAPSHOTS, "smmuv3-qemu72-linux61");

function cli(args: readonly string[], input?: string) {
  return spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    input,
    timeout: 60_000,
    env: { ...process.env, COLUMNS: "80" },
  });
}
const lines = (s: string) =>
  s
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iommu-kit-snapdir-"));
  return () => rmSync(dir, { recursive: true, force: true });
});

describe("translate --snapshot DIR --check", () => {
  it("ships snapshots of both architectures", () => {
    expect(snapshots.filter((s) => s.startsWith("vtd-")).length).toBeGreaterThan(5);
    expect(snapshots.filter((s) => s.startsWith("smmuv3-")).length).toBeGreaterThan(5);
  });

  it.each(snapshots)("%s: every expected line agrees (exit 0)", (name) => {
    const r = cli(["translate", "--snapshot", join(SNAPSHOTS, name), "--check"]);
    const expected = readFileSync(join(SNAPSHOTS, name, "expect.jsonl"), "utf8")
      .trim()
      .split("\n").length;
    expect(r.stderr).toContain(`all ${expected} requests agree with their expected fields`);
    expect(r.status).toBe(0);
    const out = lines(r.stdout);
    expect(out).toHaveLength(expected);
    expect(out.every((l) => l.pass === true)).toBe(true);
  });

  it("a line that disagrees is exit 1, with pass: false and the mismatch", () => {
    const dst = join(dir, "vtd-legacy-bad");
    rmSync(dst, { recursive: true, force: true });
    spawnSync("cp", ["-r", VTD, dst]);
    const exp = readFileSync(join(dst, "expect.jsonl"), "utf8").split("\n");
    exp[0] = exp[0]!.replace('"pa": "0x1662f000"', '"pa": "0x1662e000"');
    writeFileSync(join(dst, "expect.jsonl"), exp.join("\n"));
    // The folder name no longer says the backend: it is told by the registers (RTADDR).
    const r = cli(["translate", "--snapshot", dst, "--check"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("1 of 506 requests disagree");
    const first = lines(r.stdout)[0]!;
    expect(first).toMatchObject({
      sid: 16,
      iova: "0xffe59000",
      pa: "0x1662f000",
      // Legacy second stage has no execute control (VT-d 9.8): x is granted; the
      // fixture's "rw" comes from the R/W bits, so x is not compared.
      perm: "rwx",
      pass: false,
      mismatches: ["pa: expected 0x1662e000, got 0x1662f000"],
    });
  });

  it("without --check, expected fields are read and ignored (echo without them)", () => {
    const r = cli(["translate", "--snapshot", VTD]);
    expect(r.status).toBe(0);
    const first = lines(r.stdout)[0]!;
    expect(first).toEqual({
      sid: 16,
      pasid: null,
      iova: "0xffe59000",
      access: "read",
      priv: false,
      pa: "0x1662f000",
      perm: "rwx",
    });
  });

  it("warns on stderr about enabled table pointers outside every image", () => {
    const r = cli(["translate", "--snapshot", SMMU, "--requests", "-"], '{"sid": 16, "iova": "0x0"}');
    expect(r.status).toBe(0);
    expect(r.stderr.split("\n").filter((l) => l.includes("warning"))).toEqual([
      "iommu-kit: warning: CMDQ_BASE 0x5b700000 (command queue) lies outside every memory image given",
      "iommu-kit: warning: EVENTQ_BASE 0x5b800000 (event queue) lies outside every memory image given",
    ]);
    expect(lines(r.stdout)[0]!.fault).toMatchObject({
      name: "F_TRANSLATION",
      code: 0x10,
      vendor: "arm-smmuv3",
    });
  });
});

describe("the same dumps through --memory, --regs and debugfs text", () => {
  it("a JSONL page list given to --memory is read as pages, not raw bytes", () => {
    const args = ["--arch", "vtd", "--memory", join(VTD, "memory.jsonl"), "--ram", "0+0x40000000"];
    const r = cli([
      "translate",
      ...args,
      "--regs",
      join(VTD, "regs.json"),
      "--requests",
      join(VTD, "expect.jsonl"),
      "--check",
    ]);
    expect(r.stderr).toContain("all 506 requests agree");
    expect(r.status).toBe(0);
  });

  it("reads VT-d registers as Linux debugfs iommu_regset text (choosing the unit)", () => {
    const regs = JSON.parse(readFileSync(join(VTD, "regs.json"), "utf8")) as Record<string, string>;
    const body = (unit: string) =>
      [
        `IOMMU: ${unit} Register Base Address: fed90000`,
        "Name\t\t\tOffset\t\tContents",
        ...Object.entries(regs).map(
          ([k, v], i) =>
            `${k.padEnd(16)}\t0x${(i * 8).toString(16).padStart(2, "0")}\t\t0x${BigInt(v).toString(16).padStart(16, "0")}`,
        ),
        "",
      ].join("\n");
    const file = join(dir, "iommu_regset");
    writeFileSync(file, body("dmar0") + body("dmar1").replace(/0x0000000002f36000/, "0x0000000000000000"));
    const base = [
      "translate",
      "--arch",
      "vtd",
      "--memory",
      join(VTD, "memory.jsonl"),
      "--ram",
      "0+0x40000000",
    ];
    const r = cli([
      ...base,
      "--regs",
      file,
      "--unit",
      "dmar0",
      "--requests",
      join(VTD, "expect.jsonl"),
      "--check",
    ]);
    expect(r.stderr).toContain("all 506 requests agree");
    expect(r.status).toBe(0);
    // dmar1 has no root table: the first request now fails, and --check says so.
    const bad = cli([
      ...base,
      "--regs",
      file,
      "--unit",
      "dmar1",
      "--requests",
      join(VTD, "expect.jsonl"),
      "--check",
    ]);
    expect(bad.status).toBe(1);
  });

  it("--ram declares zero-filled RAM: a walk there reads zeros, not a bus error", () => {
    const regs = join(dir, "flat.json");
    writeFileSync(regs, '{"TABLE": "0x10000"}');
    const req = '{"sid": 0, "iova": "0x1000"}';
    const ram = cli(
      [
        "translate",
        "--plugin",
        FLAT,
        "--arch",
        "flat",
        "--ram",
        "0x10000+0x1000",
        "--regs",
        regs,
        "--requests",
        "-",
      ],
      req,
    );
    expect(ram.status).toBe(0);
    expect(lines(ram.stdout)[0]!.fault).toMatchObject({ name: "NOT_PRESENT", code: 1 });
  });
});

describe("explain and dump on real dumps: one naming, hex, letters, width", () => {
  it("VT-d levels by the spec's names; addresses hex in text and JSON; lines fit 80 columns", () => {
    const args = [
      "explain",
      "--snapshot",
      join(SNAPSHOTS, "vtd-legacy-aw48-qemu72-linux61"),
      "--sid",
      "16",
      "--iova",
      "0xffe59000",
    ];
    const r = cli(args);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/SS PML4E\s+0x2f44000\s+0\s+0x000000001a701003\s+table/);
    expect(r.stdout).toMatch(/SS PTE\s+0x1a7272c8\s+89\s+0x000000001c02f003\s+leaf 2\^12/);
    expect(r.stdout).not.toMatch(/SS L\d/);
    expect(r.stdout.split("\n").every((l) => l.length <= 80)).toBe(true);
    const j = JSON.parse(cli([...args, "--json"]).stdout);
    expect(j).toMatchObject({
      sid: 16,
      pasid: null,
      iova: "0xffe59000",
      access: "read",
      pa: "0x1c02f000",
      perm: "rwx",
    });
    expect(j.steps.map((s: { what: string }) => s.what)).toEqual([
      "root entry",
      "context entry",
      "SS PML4E",
      "SS PDPE",
      "SS PDE",
      "SS PTE",
      "translation",
    ]);
    expect(
      j.steps.every(
        (s: { address: unknown }) => s.address === null || /^0x[0-9a-f]+$/.test(String(s.address)),
      ),
    ).toBe(true);
  });

  it("SMMUv3 levels by VMSAv8-64 lookup level, permissions as letters, faults with the translate shape", () => {
    const r = cli(["explain", "--snapshot", SMMU, "--sid", "16", "--iova", "0x0", "--json"]);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(
      j.steps.filter((s: { what: string }) => /^S1 L/.test(s.what)).map((s: { what: string }) => s.what),
    ).toEqual(["S1 L0", "S1 L1"]);
    expect(j.fault).toMatchObject({
      class: "translation",
      name: "F_TRANSLATION",
      code: 0x10,
      vendor: "arm-smmuv3",
    });
    const ok = cli(["explain", "--snapshot", SMMU, "--sid", "16", "--iova", "0xfffff000"]);
    expect(ok.stdout).not.toMatch(/perm \d/);
  });

  it("a VT-d unit in abort-DMA mode says so instead of fault 0x-1", () => {
    const regs = JSON.parse(readFileSync(join(VTD, "regs.json"), "utf8")) as Record<string, string>;
    regs.RTADDR = `0x${(BigInt(regs.RTADDR!) | 0xc00n).toString(16)}`;
    regs.ECAP = `0x${(BigInt(regs.ECAP!) | (1n << 49n)).toString(16)}`;
    const file = join(dir, "abort.json");
    writeFileSync(file, JSON.stringify(regs));
    const args = [
      "explain",
      "--arch",
      "vtd",
      "--memory",
      join(VTD, "memory.jsonl"),
      "--regs",
      file,
      "--sid",
      "16",
      "--iova",
      "0",
    ];
    const r = cli(args);
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain("0x-1");
    expect(r.stdout).toContain("blocked: abort-DMA mode (RTADDR.TTM = 11b), no");
    expect(JSON.parse(cli([...args, "--json"]).stdout).fault).toMatchObject({
      class: "blocked",
      code: null,
      recorded: false,
    });
  });

  it("dump: addresses hex in JSON, debugfs walk tables split to fit 80 columns", () => {
    const j = cli(["dump", "--snapshot", VTD, "--sid", "16", "--json"]);
    expect(j.status).toBe(0);
    expect(j.stdout).not.toMatch(/"(address|slptptr|pasidDirPtr)":\d/);
    expect(JSON.parse(j.stdout)).toMatchObject({ rootTable: "0x2f36000" });
    const t = cli(["dump", "--snapshot", VTD, "--sid", "16"]);
    expect(t.status).toBe(0);
    expect(t.stdout).toContain("IOVA_PFN          PDPE                PDE");
    expect(t.stdout.split("\n").every((l) => l.length <= 80)).toBe(true);
  });
});
